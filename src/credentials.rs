//! Reading the OAuth token named by a DirectoryConnection. Secrets are read by name when
//! needed and never cached or watched.

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use crate::crd::SecretKeyReference;
use crate::directory::Token;
use crate::reason::{Failure, Reason};

/// A token and the resourceVersion of the Secret it was read from.
pub struct Credentials {
    pub token: Token,
    pub secret_version: String,
}

/// Reads and checks the token: surrounding whitespace is trimmed, and an empty value or one
/// with a line break inside is rejected.
pub async fn read_token(
    client: &Client,
    namespace: &str,
    reference: &SecretKeyReference,
) -> Result<Credentials, Failure> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = api.get_opt(&reference.name).await.map_err(|error| {
        tracing::warn!(secret = %reference.name, error = &error as &dyn std::error::Error, "failed to read token Secret");
        Failure::new(Reason::KubernetesApiError, format!("failed to read Secret {:?}", reference.name))
    })?;
    let Some(secret) = secret else {
        let message = format!("token Secret {:?} not found", reference.name);
        return Err(Failure::new(Reason::CredentialsNotFound, message));
    };

    let secret_version = secret.metadata.resource_version.clone().unwrap_or_default();
    let value = secret_value(secret, &reference.key).ok_or_else(|| {
        let message = format!(
            "key {:?} not found in token Secret {:?}",
            reference.key, reference.name
        );
        Failure::new(Reason::CredentialsNotFound, message)
    })?;
    let token = parse_token(&value).map_err(|problem| {
        let message = format!(
            "token in Secret {:?} key {:?} {problem}",
            reference.name, reference.key
        );
        Failure::new(Reason::CredentialsInvalid, message)
    })?;
    Ok(Credentials {
        token,
        secret_version,
    })
}

fn secret_value(mut secret: Secret, key: &str) -> Option<Vec<u8>> {
    if let Some(bytes) = secret.data.as_mut().and_then(|data| data.remove(key)) {
        return Some(bytes.0);
    }
    let text = secret
        .string_data
        .as_mut()
        .and_then(|data| data.remove(key))?;
    Some(text.into_bytes())
}

/// Checks a raw token value and returns it trimmed. The error names the problem without
/// repeating the value.
pub fn parse_token(raw: &[u8]) -> Result<Token, &'static str> {
    let text = std::str::from_utf8(raw).map_err(|_| "is not UTF-8 text")?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("is empty");
    }
    if trimmed.contains(['\r', '\n']) {
        return Err("contains a line break");
    }
    if !trimmed.chars().all(|c| c.is_ascii_graphic()) {
        return Err("contains characters that are not printable ASCII");
    }
    Ok(Token::new(trimmed.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_trimmed() {
        assert!(parse_token(b"  y0_token\n").is_ok());
    }

    #[test]
    fn empty_token_is_rejected() {
        assert_eq!(parse_token(b" \n").unwrap_err(), "is empty");
    }

    #[test]
    fn token_with_inner_line_break_is_rejected() {
        assert_eq!(
            parse_token(b"abc\r\ndef").unwrap_err(),
            "contains a line break"
        );
    }

    #[test]
    fn token_with_space_inside_is_rejected() {
        let err = parse_token(b"abc def").unwrap_err();
        assert_eq!(err, "contains characters that are not printable ASCII");
    }
}
