//! HTTP: `/metrics`, `/healthz`, `/readyz`, the admin API under `/v1`, and the
//! WeChat server callback. Built by issue 7.
