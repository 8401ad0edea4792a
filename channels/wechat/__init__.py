"""The WeChat notifier (issue 13): the `wechat` destination, its notice rules, typed keys and
ledger. See docs/wechat.md."""
