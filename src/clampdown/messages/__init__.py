"""What Clampdown tells people, and how each channel renders it with finding data made inert."""
