//! Trusted documents: the operations a client build ships, known to the server by the
//! SHA-256 of their text, and optionally the only operations it runs.
//!
//! The manifest is a JSON object from lowercase hex SHA-256 to document text, the
//! shape graphql-codegen's client preset and Relay write; `clients/typescript` builds
//! one for the SDK's operations (`persisted-documents.json`). A request names a
//! document by `documentId` (`sha256:<hex>`, the GraphQL-over-HTTP proposal) or by
//! Apollo's `extensions.persistedQuery.sha256Hash`, with or without the text:
//!
//! - a known hash runs the manifest's text (the request's text, if any, must match);
//! - an unknown hash without text is `PERSISTED_QUERY_NOT_FOUND` (Apollo's link then
//!   sends the text), or `PERSISTED_QUERY_NOT_SUPPORTED` when no manifest is loaded;
//! - when the manifest is enforced (`TRELLIS_TRUSTED_DOCUMENTS_ONLY`), a text whose hash
//!   the manifest does not hold is refused with `TRUSTED_DOCUMENT_REQUIRED`, so a
//!   production server runs only what its clients were built with.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::{Request, ServerResult, Value};

use crate::error::request_error as error;

/// The manifest of trusted documents, and whether only they may run.
#[derive(Clone, Debug, Default)]
pub struct TrustedDocuments {
    documents: Arc<HashMap<String, String>>,
    enforced: bool,
}

impl TrustedDocuments {
    /// Reads a manifest; every key must be the SHA-256 of its document.
    pub fn from_manifest(json: &str, enforced: bool) -> Result<Self, String> {
        let documents: HashMap<String, String> = serde_json::from_str(json)
            .map_err(|err| format!("not a JSON object of hash to document: {err}"))?;
        for (hash, document) in &documents {
            if *hash != sha256_hex(document) {
                return Err(format!(
                    "the key {hash} is not the SHA-256 of its document; regenerate the manifest"
                ));
            }
        }
        Ok(Self {
            documents: Arc::new(documents),
            enforced,
        })
    }

    /// No manifest: every document runs, and persisted queries are not supported.
    pub fn none() -> Self {
        Self::default()
    }

    /// How many documents the manifest holds.
    pub fn len(&self) -> usize {
        self.documents.len()
    }

    /// Whether the manifest holds no document.
    pub fn is_empty(&self) -> bool {
        self.documents.is_empty()
    }

    /// Whether only the manifest's documents may run.
    pub fn is_enforced(&self) -> bool {
        self.enforced
    }

    /// Fills in the text of a request that names a document, and refuses what may not
    /// run (see the module docs).
    pub fn admit(&self, request: &mut Request) -> ServerResult<()> {
        if self.documents.is_empty()
            && request.query.is_empty()
            && request.extensions.contains_key("persistedQuery")
        {
            return Err(error(
                "PersistedQueryNotSupported",
                "PERSISTED_QUERY_NOT_SUPPORTED",
            ));
        }
        match requested_hash(request)? {
            Some(hash) if request.query.is_empty() => {
                let Some(document) = self.documents.get(&hash) else {
                    return Err(error("PersistedQueryNotFound", "PERSISTED_QUERY_NOT_FOUND"));
                };
                request.query.clone_from(document);
                Ok(())
            }
            Some(hash) => {
                if sha256_hex(&request.query) != hash {
                    return Err(error(
                        "provided sha does not match query",
                        "PERSISTED_QUERY_HASH_MISMATCH",
                    ));
                }
                self.check_trusted(&hash)
            }
            None if self.enforced => self.check_trusted(&sha256_hex(&request.query)),
            None => Ok(()),
        }
    }

    fn check_trusted(&self, hash: &str) -> ServerResult<()> {
        if !self.enforced || self.documents.contains_key(hash) {
            return Ok(());
        }
        Err(error(
            "only trusted documents run on this server: send the documentId of an operation \
             in the client's manifest",
            "TRUSTED_DOCUMENT_REQUIRED",
        ))
    }
}

/// The hash a request names: `extensions.persistedQuery.sha256Hash`, which the HTTP
/// layer also fills from `documentId`.
fn requested_hash(request: &Request) -> ServerResult<Option<String>> {
    let Some(persisted) = request.extensions.get("persistedQuery") else {
        return Ok(None);
    };
    let hash = match persisted {
        Value::Object(fields) => match fields.get("sha256Hash") {
            Some(Value::String(hash)) => Some(hash.to_ascii_lowercase()),
            _ => None,
        },
        _ => None,
    };
    hash.filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(Some)
        .ok_or_else(|| {
            error(
                "persistedQuery needs a sha256Hash of 64 hex digits",
                "BAD_USER_INPUT",
            )
        })
}

/// The lowercase hex SHA-256 of `text`.
pub fn sha256_hex(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "query Viewer { viewer { id } }";

    fn manifest(enforced: bool) -> TrustedDocuments {
        let json = serde_json::json!({ sha256_hex(DOC): DOC }).to_string();
        TrustedDocuments::from_manifest(&json, enforced).unwrap()
    }

    fn named(hash: &str, query: &str) -> Request {
        let mut request = Request::new(query);
        request.extensions.insert(
            "persistedQuery".into(),
            Value::from_json(serde_json::json!({ "version": 1, "sha256Hash": hash })).unwrap(),
        );
        request
    }

    fn code(result: ServerResult<()>) -> String {
        let err = result.unwrap_err();
        match err.extensions.unwrap().get("code") {
            Some(Value::String(code)) => code.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_known_hash_runs_its_document_and_an_unknown_one_asks_for_the_text() {
        let trusted = manifest(false);
        let mut request = named(&sha256_hex(DOC), "");
        trusted.admit(&mut request).unwrap();
        assert_eq!(request.query, DOC);
        let other = sha256_hex("{ x }");
        assert_eq!(
            code(trusted.admit(&mut named(&other, ""))),
            "PERSISTED_QUERY_NOT_FOUND"
        );
        // Not enforced: any text runs, with its hash or without.
        trusted.admit(&mut named(&other, "{ x }")).unwrap();
        trusted.admit(&mut Request::new("{ x }")).unwrap();
        assert_eq!(
            code(trusted.admit(&mut named(&other, "{ y }"))),
            "PERSISTED_QUERY_HASH_MISMATCH"
        );
        assert_eq!(
            code(TrustedDocuments::none().admit(&mut named(&other, ""))),
            "PERSISTED_QUERY_NOT_SUPPORTED"
        );
        assert_eq!(code(trusted.admit(&mut named("abc", ""))), "BAD_USER_INPUT");
    }

    #[test]
    fn enforced_manifests_run_only_their_documents() {
        let trusted = manifest(true);
        trusted.admit(&mut Request::new(DOC)).unwrap();
        trusted.admit(&mut named(&sha256_hex(DOC), "")).unwrap();
        assert_eq!(
            code(trusted.admit(&mut Request::new("{ __schema { types { name } } }"))),
            "TRUSTED_DOCUMENT_REQUIRED"
        );
        let other = sha256_hex("{ x }");
        assert_eq!(
            code(trusted.admit(&mut named(&other, "{ x }"))),
            "TRUSTED_DOCUMENT_REQUIRED"
        );
    }

    #[test]
    fn manifests_with_a_wrong_hash_are_refused() {
        let json = serde_json::json!({ sha256_hex("{ x }"): DOC }).to_string();
        assert!(TrustedDocuments::from_manifest(&json, false).is_err());
        assert!(TrustedDocuments::from_manifest("[]", false).is_err());
    }
}
