"""The embedded engine: the ingress with a SQLite log, and beside it the processing half (the log
consumer, the dispatcher, the rules) over ``state.db``, in a child process by default."""
