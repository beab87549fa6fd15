"""The gate as an HTTP service: the API, its tokens and roles, metrics, and `phase24 serve`."""
