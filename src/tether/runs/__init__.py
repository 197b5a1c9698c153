"""Run folders every command writes: the sample store of eval and red-team runs."""
