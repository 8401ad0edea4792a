"""The WeChat notifier (issue 13): API client, shared token, bindings, notices."""
