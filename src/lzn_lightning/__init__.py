"""lzn-lightning."""
