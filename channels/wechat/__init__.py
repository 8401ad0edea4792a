"""The WeChat notifier (issue 13): API client, bindings of openids to persons, the callback
endpoint, and the `wechat` destination."""
