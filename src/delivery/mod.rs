//! Delivery: dispatcher, channels (webhook, WeChat, log), templating at send time,
//! retries, rate limits. Built by issue 6.
