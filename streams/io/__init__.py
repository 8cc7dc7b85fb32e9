"""Reading and writing JSON Lines: the codec, event sources from files, report writers."""
