"""Run folders: the marker and checks every command's ``--out`` goes through, and the sample store of eval
and red-team runs."""
