"""The blinded reader study: its file, the session of one reader, the views and ROI tables."""
