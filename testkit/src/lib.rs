//! Test and demo tooling for y360-avatar-operator: a local kube-apiserver with etcd, a
//! stand-in for the Yandex 360 Directory API, and a small image server. None of it ships in the
//! operator binary.

pub mod bench;
pub mod cluster;
pub mod directory;
pub mod images;
