"""fMRI stage: ROI masks and BOLD runs → sample matrices (one row per stimulus block)."""
