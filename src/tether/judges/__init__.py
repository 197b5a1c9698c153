"""Judges that label model responses."""
