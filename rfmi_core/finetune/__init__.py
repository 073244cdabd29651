"""RFMI FT's data (paper Algorithm 1): scored candidates, selection, picks, candidate makers, the fine-tune set
and its builder."""
