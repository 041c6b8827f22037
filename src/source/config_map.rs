use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;

use super::SourceError;

/// Bytes of one ConfigMap key and the resourceVersion they were read at.
pub struct ConfigMapBytes {
    pub bytes: Vec<u8>,
    pub resource_version: Option<String>,
}

/// Reads one key of a ConfigMap by name: `binaryData` first, then `data` as UTF-8 bytes.
pub async fn read_config_map_key(
    api: &Api<ConfigMap>,
    name: &str,
    key: &str,
) -> Result<ConfigMapBytes, SourceError> {
    let config_map = api
        .get_opt(name)
        .await
        .map_err(|source| SourceError::ReadConfigMap {
            name: name.to_owned(),
            source,
        })?;
    let Some(config_map) = config_map else {
        return Err(SourceError::ConfigMapNotFound {
            name: name.to_owned(),
        });
    };

    let resource_version = config_map.metadata.resource_version.clone();
    let bytes = key_bytes(config_map, key).ok_or_else(|| SourceError::KeyNotFound {
        name: name.to_owned(),
        key: key.to_owned(),
    })?;
    Ok(ConfigMapBytes {
        bytes,
        resource_version,
    })
}

fn key_bytes(mut config_map: ConfigMap, key: &str) -> Option<Vec<u8>> {
    let binary = config_map
        .binary_data
        .as_mut()
        .and_then(|data| data.remove(key));
    if let Some(bytes) = binary {
        return Some(bytes.0);
    }
    let text = config_map.data.as_mut().and_then(|data| data.remove(key))?;
    Some(text.into_bytes())
}
