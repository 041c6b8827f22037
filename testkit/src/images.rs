//! Image server (in progress).
