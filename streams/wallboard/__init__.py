"""callwatch's own wallboard in the browser: a versioned JSON view of the live board (`view`), the
green/amber/red status of each figure with hysteresis (`status`), and the aiohttp server that
serves the page, the JSON, a server-sent-events stream and /metrics (`server`). See
docs/wallboard.md."""
