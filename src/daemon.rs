//! The supervisor: scheduler, planner, dispatcher and HTTP under one cancellation
//! tree; reload, sd_notify, graceful stop. Built by issue 7.
