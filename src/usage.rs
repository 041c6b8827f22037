//! Index from ConfigMaps and DirectoryConnections to the UserAvatars that use them, kept up
//! to date from the UserAvatar watch, so that a change finds its users without a scan.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;

use crate::crd::UserAvatar;

/// Namespace and name of a referenced object.
type Key = (String, String);

#[derive(Default)]
struct Maps {
    by_config_map: HashMap<Key, HashSet<ObjectRef<UserAvatar>>>,
    by_connection: HashMap<Key, HashSet<ObjectRef<UserAvatar>>>,
    uses: HashMap<ObjectRef<UserAvatar>, (Option<Key>, Key)>,
}

#[derive(Default)]
struct State {
    current: Maps,
    /// Maps being rebuilt during a relist; they replace `current` when the relist ends.
    relist: Option<Maps>,
}

/// Shared usage index. Cloning shares it.
#[derive(Clone, Default)]
pub struct UsageIndex {
    state: Arc<Mutex<State>>,
}

impl UsageIndex {
    /// Applies one UserAvatar watch event.
    pub fn apply(&self, event: &watcher::Event<UserAvatar>) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match event {
            watcher::Event::Init => state.relist = Some(Maps::default()),
            watcher::Event::InitApply(avatar) => {
                let maps = state.relist.get_or_insert_with(Maps::default);
                maps.insert(avatar);
            }
            watcher::Event::InitDone => {
                if let Some(maps) = state.relist.take() {
                    state.current = maps;
                }
            }
            watcher::Event::Apply(avatar) => state.current.insert(avatar),
            watcher::Event::Delete(avatar) => state.current.remove(&ObjectRef::from_obj(avatar)),
        }
    }

    /// Returns the UserAvatars that read the ConfigMap `namespace/name`.
    pub fn users_of_config_map(&self, namespace: &str, name: &str) -> Vec<ObjectRef<UserAvatar>> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let key = (namespace.to_owned(), name.to_owned());
        state
            .current
            .by_config_map
            .get(&key)
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }

    /// Returns the UserAvatars that upload through the DirectoryConnection `namespace/name`.
    pub fn users_of_connection(&self, namespace: &str, name: &str) -> Vec<ObjectRef<UserAvatar>> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let key = (namespace.to_owned(), name.to_owned());
        state
            .current
            .by_connection
            .get(&key)
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }
}

impl Maps {
    fn insert(&mut self, avatar: &UserAvatar) {
        let reference = ObjectRef::from_obj(avatar);
        self.remove(&reference);
        let namespace = avatar.namespace().unwrap_or_default();
        let config_map = avatar.spec.source.config_map.as_ref();
        let config_map = config_map.map(|source| (namespace.clone(), source.name.clone()));
        let connection = (namespace, avatar.spec.connection_ref.name.clone());

        if let Some(key) = &config_map {
            self.by_config_map
                .entry(key.clone())
                .or_default()
                .insert(reference.clone());
        }
        self.by_connection
            .entry(connection.clone())
            .or_default()
            .insert(reference.clone());
        self.uses.insert(reference, (config_map, connection));
    }

    fn remove(&mut self, reference: &ObjectRef<UserAvatar>) {
        let Some((config_map, connection)) = self.uses.remove(reference) else {
            return;
        };
        if let Some(key) = config_map {
            remove_from(&mut self.by_config_map, &key, reference);
        }
        remove_from(&mut self.by_connection, &connection, reference);
    }
}

fn remove_from(
    map: &mut HashMap<Key, HashSet<ObjectRef<UserAvatar>>>,
    key: &Key,
    reference: &ObjectRef<UserAvatar>,
) {
    if let Some(users) = map.get_mut(key) {
        users.remove(reference);
        if users.is_empty() {
            map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ConfigMapKeySource, UserAvatarSpec};

    fn avatar(name: &str, config_map: &str) -> UserAvatar {
        let mut spec = UserAvatarSpec::default();
        spec.connection_ref.name = "default".into();
        spec.source.config_map = Some(ConfigMapKeySource {
            name: config_map.into(),
            key: "k".into(),
        });
        let mut avatar = UserAvatar::new(name, spec);
        avatar.metadata.namespace = Some("ns".into());
        avatar
    }

    fn names(references: Vec<ObjectRef<UserAvatar>>) -> Vec<String> {
        let mut names: Vec<String> = references.into_iter().map(|r| r.name).collect();
        names.sort();
        names
    }

    #[test]
    fn finds_users_of_config_map() {
        let index = UsageIndex::default();
        index.apply(&watcher::Event::Apply(avatar("a", "one")));
        index.apply(&watcher::Event::Apply(avatar("b", "one")));
        index.apply(&watcher::Event::Apply(avatar("c", "two")));
        assert_eq!(names(index.users_of_config_map("ns", "one")), ["a", "b"]);
        assert_eq!(
            names(index.users_of_config_map("other", "one")),
            Vec::<String>::new()
        );
        assert_eq!(
            names(index.users_of_connection("ns", "default")),
            ["a", "b", "c"]
        );
    }

    #[test]
    fn update_moves_user_to_new_config_map() {
        let index = UsageIndex::default();
        index.apply(&watcher::Event::Apply(avatar("a", "one")));
        index.apply(&watcher::Event::Apply(avatar("a", "two")));
        assert!(index.users_of_config_map("ns", "one").is_empty());
        assert_eq!(names(index.users_of_config_map("ns", "two")), ["a"]);
    }

    #[test]
    fn delete_removes_user() {
        let index = UsageIndex::default();
        index.apply(&watcher::Event::Apply(avatar("a", "one")));
        index.apply(&watcher::Event::Delete(avatar("a", "one")));
        assert!(index.users_of_config_map("ns", "one").is_empty());
        assert!(index.users_of_connection("ns", "default").is_empty());
    }

    #[test]
    fn relist_replaces_index() {
        let index = UsageIndex::default();
        index.apply(&watcher::Event::Apply(avatar("gone", "one")));
        index.apply(&watcher::Event::Init);
        index.apply(&watcher::Event::InitApply(avatar("kept", "one")));
        assert_eq!(names(index.users_of_config_map("ns", "one")), ["gone"]);
        index.apply(&watcher::Event::InitDone);
        assert_eq!(names(index.users_of_config_map("ns", "one")), ["kept"]);
    }
}
