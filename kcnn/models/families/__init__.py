"""One module per architecture family: its layer specs and its builder function."""
