//! Directory API stand-in (in progress).
