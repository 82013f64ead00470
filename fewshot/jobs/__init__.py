"""Jobs over input of any size: chunked, resumable predict and embed (the local engine),
and the Ray Data engine. Each module imports its heavy libraries when it runs."""
