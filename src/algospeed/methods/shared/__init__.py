"""Pieces several methods share (proxy scoring, model surgery, schedules, optimizer swaps, soft
targets); no method is registered here."""
