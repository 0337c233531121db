//! The SavvyCal API pager: `GET /v1/events`, oldest first, following `metadata.after` until null.
//!
//! The API's defaults hide past, canceled and not-attending bookings, so the query always names
//! `period`, `state` and `attendance` explicitly. Pages are parsed once, with entries borrowed as
//! raw JSON; each event's bytes are a slice of the page buffer (no copy). The requests themselves
//! (token, retries, timeouts) are [`super::client`]'s.
//!
//! The next page is requested as soon as its cursor is known, before this page's events are even
//! queued: against a slow API, paging then overlaps delivery instead of adding to it.

use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use tracing::info;
use url::Url;

use super::client::ApiClient;
use super::paging::PagingGuard;
use super::{Batch, SourceError};
use crate::event::Event;

/// `period` of `/v1/events`: which bookings by start date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Period {
    All,
    Past,
    Upcoming,
}

/// `state` of `/v1/events`: which bookings by state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum State {
    All,
    Confirmed,
    Canceled,
}

/// `attendance` of `/v1/events`: whether bookings the organizer declined are included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Attendance {
    Any,
    Attending,
}

impl Period {
    pub fn as_query(self) -> &'static str {
        match self {
            Period::All => "all",
            Period::Past => "past",
            Period::Upcoming => "upcoming",
        }
    }
}

impl State {
    pub fn as_query(self) -> &'static str {
        match self {
            State::All => "all",
            State::Confirmed => "confirmed",
            State::Canceled => "canceled",
        }
    }
}

impl Attendance {
    pub fn as_query(self) -> &'static str {
        match self {
            Attendance::Any => "any",
            Attendance::Attending => "attending",
        }
    }
}

/// What to ask `/v1/events` for.
#[derive(Debug, Clone, Copy)]
pub struct ApiQuery {
    pub period: Period,
    pub state: State,
    pub attendance: Attendance,
    pub page_size: u32,
}

impl Default for ApiQuery {
    /// Everything, oldest first in pages of 100: the API's own defaults would hide past, canceled
    /// and declined bookings.
    fn default() -> Self {
        ApiQuery { period: Period::All, state: State::All, attendance: Attendance::Any, page_size: 100 }
    }
}

/// `/v1/events`, a page at a time.
pub struct ApiPager {
    api: Arc<ApiClient>,
    query: ApiQuery,
    after: Option<String>,
    pages: u64,
    done: bool,
    paging: PagingGuard,
    /// Why paging stopped after the last page returned, to report on the next call.
    stopped: Option<SourceError>,
    /// The next page, already on its way.
    next: Option<Prefetch>,
}

/// A page request running on its own task; dropping it (the run stopped) abandons the request.
struct Prefetch(tokio::task::JoinHandle<Result<Bytes, SourceError>>);

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Deserialize)]
struct Page<'a> {
    #[serde(borrow)]
    entries: Vec<&'a RawValue>,
    metadata: Metadata,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    after: Option<String>,
}

impl ApiPager {
    pub fn new(api: ApiClient, query: ApiQuery) -> ApiPager {
        ApiPager {
            api: Arc::new(api),
            query,
            after: None,
            pages: 0,
            done: false,
            paging: PagingGuard::new("/v1/events"),
            stopped: None,
            next: None,
        }
    }

    /// The client, for the other endpoints: the token check and the webhook lookup.
    pub fn api(&self) -> &ApiClient {
        &self.api
    }

    pub fn describe(&self) -> String {
        self.api.describe()
    }

    fn events_url(&self) -> Url {
        let mut url = self.api.endpoint("v1/events");
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("limit", &self.query.page_size.to_string());
            q.append_pair("period", self.query.period.as_query());
            q.append_pair("state", self.query.state.as_query());
            q.append_pair("attendance", self.query.attendance.as_query());
            q.append_pair("direction", "asc");
            if let Some(after) = &self.after {
                q.append_pair("after", after);
            }
        }
        url
    }

    /// The next page of events, or `None` after the last one.
    pub async fn next_page(&mut self) -> Result<Option<Batch>, SourceError> {
        if let Some(e) = self.stopped.take() {
            return Err(e);
        }
        if self.done {
            return Ok(None);
        }
        let what = self.what();
        let fetched = match self.next.take() {
            Some(mut prefetch) => (&mut prefetch.0)
                .await
                .unwrap_or_else(|e| Err(SourceError::Malformed(format!("{what}: the request stopped: {e}")))),
            None => self.api.get(self.events_url(), &what).await,
        };
        let body = fetched.map_err(|e| match e {
            // Fewer events per page is the one thing the user can do about a page that big.
            SourceError::TooLarge { what, max_mib, .. } if self.query.page_size > 1 => SourceError::TooLarge {
                what,
                max_mib,
                hint: format!(
                    "; ask for fewer events per page: --page-size is {}, try --page-size {}",
                    self.query.page_size,
                    (self.query.page_size / 4).max(1)
                ),
            },
            e => e,
        })?;
        let page: Page<'_> =
            serde_json::from_slice(&body).map_err(|e| SourceError::Malformed(format!("{what}: {e}")))?;
        let mut batch = Batch { events: Vec::with_capacity(page.entries.len()), malformed: Vec::new() };
        for (i, entry) in page.entries.iter().enumerate() {
            let raw = body.slice_ref(entry.get().as_bytes());
            match Event::from_raw(raw) {
                Ok(ev) => batch.events.push(ev),
                Err(e) => batch.malformed.push(format!("{what}, entry {}: {e}", i + 1)),
            }
        }
        self.pages += 1;
        info!(page = self.pages, events = page.entries.len(), "fetched a page from the SavvyCal API");
        match page.metadata.after {
            Some(next) => match self.paging.check(self.pages, &next, page.entries.is_empty()) {
                Ok(()) => {
                    self.after = Some(next);
                    self.prefetch();
                }
                // This page's events are as good as any: process them, then stop.
                Err(e) => {
                    self.stopped = Some(e);
                    self.done = true;
                }
            },
            None => self.done = true,
        }
        Ok(Some(batch))
    }

    /// `page N of /v1/events`, N the next page's number.
    fn what(&self) -> String {
        format!("page {} of /v1/events", self.pages + 1)
    }

    /// Send the request for the next page now; [`ApiPager::next_page`] picks up its answer.
    fn prefetch(&mut self) {
        let (api, url, what) = (Arc::clone(&self.api), self.events_url(), self.what());
        self.next = Some(Prefetch(tokio::spawn(async move { api.get(url, &what).await })));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_names_every_filter_and_the_cursor() {
        let api = ApiClient::new(
            Url::parse("https://api.example.com/base/").unwrap(),
            secrecy::SecretString::from("pt_secret_x"),
            crate::deliver::retry::RetryPolicy::default(),
            std::time::Duration::from_secs(30),
            tokio_util::sync::CancellationToken::new(),
        )
        .unwrap();
        let mut p = ApiPager::new(api, ApiQuery::default());
        assert_eq!(
            p.events_url().as_str(),
            "https://api.example.com/base/v1/events?limit=100&period=all&state=all&attendance=any&direction=asc"
        );
        p.after = Some("g3Q+AAA=".into());
        assert!(p.events_url().as_str().ends_with("&after=g3Q%2BAAA%3D"));
    }

    /// While one page's events are being handled (here: not at all), the next page is already
    /// on its way; and nothing is requested past the last page.
    #[tokio::test]
    async fn the_next_page_is_requested_before_it_is_asked_for() {
        use savvy_replay_fake::{FakeApi, FakeApiConfig, generate_bookings};
        const TOKEN: &str = "pt_secret_prefetch";
        let api = FakeApi::start(FakeApiConfig {
            token: TOKEN.into(),
            events: generate_bookings(250, 3),
            ..FakeApiConfig::default()
        })
        .await
        .unwrap();
        let client = ApiClient::new(
            crate::config::api_base(&api.base_url()).unwrap(),
            secrecy::SecretString::from(TOKEN),
            crate::deliver::retry::RetryPolicy::default(),
            std::time::Duration::from_secs(5),
            tokio_util::sync::CancellationToken::new(),
        )
        .unwrap();
        let mut pager = ApiPager::new(client, ApiQuery::default());
        let first = pager.next_page().await.unwrap().unwrap();
        assert_eq!(first.events.len(), 100);
        let waited = std::time::Instant::now();
        while api.events_requests() < 2 {
            assert!(
                waited.elapsed() < std::time::Duration::from_secs(10),
                "page 2 was not requested while page 1 was being handled"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let mut total = first.events.len();
        while let Some(page) = pager.next_page().await.unwrap() {
            total += page.events.len();
        }
        assert_eq!(total, 250);
        assert_eq!(api.events_requests(), 3, "three pages, no request after the last");
    }
}
