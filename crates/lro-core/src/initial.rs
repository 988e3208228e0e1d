//! The initial exchange of an operation: the request that started it and the service's answer.

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, Uri};

/// What polling needs to know of the request that started an operation: method, URL, headers.
///
/// The body is not kept (polls never resend it).
#[derive(Debug, Clone)]
pub struct RequestHead {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl RequestHead {
    /// A request head from its parts.
    pub fn new(method: Method, uri: Uri, headers: HeaderMap) -> Self {
        RequestHead { method, uri, headers }
    }

    /// The head of `request` (its body is not copied).
    pub fn of<B>(request: &Request<B>) -> Self {
        RequestHead::new(request.method().clone(), request.uri().clone(), request.headers().clone())
    }

    /// The HTTP method (`PUT`, `POST`, ...).
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The absolute URL ("original URI").
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// The request headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }
}

/// The request that started an operation and the service's first response: what a polling
/// method is initialized with (azure-core's initial `PipelineResponse`).
///
/// ```
/// use bytes::Bytes;
/// use http::{Request, Response};
/// use lro_core::InitialResponse;
///
/// let request = Request::put("https://example.com/widgets/1").body(Bytes::new())?;
/// let response = Response::builder().status(201).body(Bytes::new())?;
/// let initial = InitialResponse::from_exchange(&request, response);
/// assert_eq!(initial.request().method(), "PUT");
/// # Ok::<(), http::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct InitialResponse {
    request: RequestHead,
    response: Response<Bytes>,
}

impl InitialResponse {
    /// Pairs a request head with its response.
    pub fn new(request: RequestHead, response: Response<Bytes>) -> Self {
        InitialResponse { request, response }
    }

    /// Pairs `request` (its head only) with `response`.
    pub fn from_exchange<B>(request: &Request<B>, response: Response<Bytes>) -> Self {
        Self::new(RequestHead::of(request), response)
    }

    /// Sends `request` through a blocking client and pairs it with the response.
    pub fn send(
        client: &dyn crate::HttpClient,
        request: Request<Bytes>,
    ) -> Result<Self, crate::LroError> {
        let head = RequestHead::of(&request);
        let response = client.send(request).map_err(crate::LroError::transport)?;
        Ok(Self::new(head, response))
    }

    /// Sends `request` through an async client and pairs it with the response.
    pub async fn send_async(
        client: &dyn crate::AsyncHttpClient,
        request: Request<Bytes>,
    ) -> Result<Self, crate::LroError> {
        let head = RequestHead::of(&request);
        let response = client.send(request).await.map_err(crate::LroError::transport)?;
        Ok(Self::new(head, response))
    }

    /// The request that started the operation.
    pub fn request(&self) -> &RequestHead {
        &self.request
    }

    /// The service's first response.
    pub fn response(&self) -> &Response<Bytes> {
        &self.response
    }
}
