//! Endpoint discovery: the catalog URL of a service, completed with the API version found in
//! its version document, and for compute the microversion both sides speak.

use std::future::Future;
use std::pin::Pin;

use serde_json::Value;

use super::catalog::{self, COMPUTE_MIN_MICROVERSION, Microversion};
use super::client::Cloud;
use super::error::{ApiError, Service};
use super::request::Req;

/// A service endpoint, ready for requests.
#[derive(Clone, Debug)]
pub(crate) struct Endpoint {
    /// Versioned base URL, without a trailing slash.
    pub(crate) url: String,
    pub(crate) microversion: Option<Microversion>,
}

impl Cloud {
    /// Discovery sends requests, and sending needs the endpoint: the cycle is broken by boxing
    /// (discovery requests use absolute URLs, so it never actually recurses).
    pub(crate) fn discover_boxed(
        &self,
        service: Service,
    ) -> Pin<Box<dyn Future<Output = Result<Endpoint, ApiError>> + Send + '_>> {
        Box::pin(self.discover(service))
    }

    async fn discover(&self, service: Service) -> Result<Endpoint, ApiError> {
        let config = self.config();
        let (url, project) = {
            let session = self.session();
            let url = catalog::select_endpoint(
                &session.catalog,
                service,
                config.interface,
                config.region_name.as_deref(),
            )?;
            (url, session.project.as_ref().map(|p| p.id.clone()))
        };
        let url = match service {
            Service::Compute => return self.discover_compute(url).await,
            Service::Image => self.discover_major(service, url, 2, "v2").await?,
            Service::Network => self.discover_major(service, url, 2, "v2.0").await?,
            // Cinder's catalog URL normally carries `/v3/<project>`; complete a bare root.
            Service::BlockStorage if catalog::version_prefix(&url).is_none() => match project {
                Some(project) => format!("{url}/v3/{project}"),
                None => format!("{url}/v3"),
            },
            _ => url,
        };
        tracing::debug!(%service, %url, "endpoint");
        Ok(Endpoint {
            url,
            microversion: None,
        })
    }

    async fn version_doc(&self, service: Service, url: String) -> Result<Value, ApiError> {
        // Glance and Nova answer their root with 300 Multiple Choices.
        self.json(Req::absolute(service, url).allow_redirect())
            .await
    }

    /// Image and network endpoints are often registered unversioned: check the version
    /// document, then append the version (to the catalog URL, not to the document's links,
    /// which name the host as the service sees it).
    async fn discover_major(
        &self,
        service: Service,
        url: String,
        major: u32,
        suffix: &'static str,
    ) -> Result<String, ApiError> {
        if catalog::ends_with_major(&url, major) {
            return Ok(url);
        }
        match self.version_doc(service, format!("{url}/")).await {
            Ok(doc) => {
                let versions = catalog::parse_versions(&doc);
                if !versions.is_empty() && catalog::find_major(&versions, major).is_none() {
                    return Err(ApiError::VersionNotFound {
                        service,
                        url,
                        wanted: suffix,
                        offered: versions.into_iter().map(|v| v.id).collect(),
                    });
                }
            }
            // Some deployments hide the root behind auth or a proxy: the versioned URL is the
            // best guess, and a wrong one fails at the first call with the service's message.
            Err(e) => {
                tracing::warn!(%service, error = %e, "no version document; assuming {suffix}")
            }
        }
        Ok(format!("{url}/{suffix}"))
    }

    async fn discover_compute(&self, url: String) -> Result<Endpoint, ApiError> {
        let (api_url, doc_url) = match catalog::version_prefix(&url) {
            Some((_, prefix)) => (url.clone(), format!("{prefix}/")),
            None => (format!("{url}/v2.1"), format!("{url}/v2.1/")),
        };
        let doc = self.version_doc(Service::Compute, doc_url.clone()).await?;
        let versions = catalog::parse_versions(&doc);
        let version = versions
            .iter()
            .find(|v| v.id == "v2.1")
            .or_else(|| versions.first())
            .ok_or_else(|| ApiError::VersionNotFound {
                service: Service::Compute,
                url: doc_url,
                wanted: "v2.1",
                offered: Vec::new(),
            })?;
        let microversion = catalog::negotiate_microversion(
            version,
            self.options().compute_microversion,
            COMPUTE_MIN_MICROVERSION,
        )?;
        tracing::debug!(url = %api_url, %microversion, "compute endpoint");
        Ok(Endpoint {
            url: api_url,
            microversion: Some(microversion),
        })
    }
}
