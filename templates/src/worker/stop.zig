//! Why a worker stops: asked by a signal (graceful or immediate) or by its supervisor's
//! control pipe. A leaf of its own because the supervisor (which sends the request) and the
//! `stopped` event (which reports it) need the reason without the event loop that acts on it.
pub const StopReason = enum { graceful, immediate, control };
