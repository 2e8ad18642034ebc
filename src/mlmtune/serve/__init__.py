"""`mlmtune serve`: the fill-mask page and JSON API (app), and the server around it."""
