//! People Nearby operations (SPEC §3 PeopleNearby, §4.3).

use std::{collections::HashSet, sync::Arc};

use tracing::instrument;

use super::{ServiceError, ServiceResult, Vicinity, audit::Action, limits::admitted};
use crate::{
    domain::{
        Deadlines, Feature, Gender, Location, UserId,
        nearby::{Hit, NearbyRequest, PageToken},
        user::GenderFilter,
    },
    storage::{LimitKey, Position, StoreError, StoreErrorKind},
};

/// A validated ListNearby request.
#[derive(Debug, Clone)]
pub struct ListNearby {
    /// Who is looking.
    pub viewer: UserId,
    /// Page size, 1..=100.
    pub limit: usize,
    /// Radius in metres, 1..=50,000.
    pub max_distance_m: u32,
    /// Gender filter.
    pub gender_filter: GenderFilter,
    /// The caller's block list.
    pub exclude: HashSet<UserId>,
    /// The previous page's token, if any.
    pub page_token: Option<String>,
}

/// One page of People Nearby.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NearbyPage {
    /// Users with their bands, in order.
    pub users: Vec<Hit>,
    /// Present when another page follows.
    pub next_page_token: Option<String>,
}

impl ListNearby {
    /// The bytes a page token is bound to: the viewer and the filters that shape the order.
    fn token_binding(&self) -> Vec<u8> {
        let filter = match self.gender_filter {
            GenderFilter::Any => 0u8,
            GenderFilter::Female => 1,
            GenderFilter::Male => 2,
        };
        let mut binding = self.viewer.as_str().as_bytes().to_vec();
        binding.extend_from_slice(&self.max_distance_m.to_be_bytes());
        binding.push(filter);
        binding
    }
}

impl Vicinity {
    /// Stores the user's position (snapped) and renews their deadlines.
    ///
    /// First the limits (SPEC §4.3), in one round trip: the user's update rate is counted
    /// while their previous entry is read, and a move faster than the jump cap allows since
    /// the previous activity is refused. Either refusal changes no user data, deadlines
    /// included (a refused jump has counted against the rate, as every admitted call does).
    /// Two updates racing each other are each judged against the entry before both; the
    /// update rate bounds how far that lets a user get.
    ///
    /// Consent is checked before the write and again after it: a withdrawal that lands in
    /// between has already purged, so without the second check this write would outlive the
    /// consent it was made under (SPEC §4.1). The write is then undone and refused. The write
    /// and the second check run in a task of their own, so a call cut off by its deadline or
    /// its client never leaves a write half done (on a cluster, the member without the
    /// record, which no Clear could find) or unchecked.
    #[instrument(skip_all)]
    pub async fn update_location(
        &self,
        user: &UserId,
        location: Location,
        gender: Gender,
    ) -> ServiceResult<Deadlines> {
        let cell = self.deps.grid.snap(location.coords);
        let policy = &self.deps.policy;
        let updates = LimitKey::Updates(user.clone());
        let Some(jump) = policy.jump else {
            self.admit(updates, policy.updates, "updates").await?;
            return self.update_consented(user, cell, gender).await;
        };
        let (admission, previous) = self
            .deps
            .limits
            .admit_reading(&updates, policy.updates, Feature::PeopleNearby, user)
            .await?;
        let now = admitted(admission, "updates")?;
        if let Some(previous) = previous {
            let since = previous.deadlines.last_active;
            if !jump.allows(previous.position.cell, since, cell, now) {
                return Err(ServiceError::ImplausibleJump);
            }
        }
        self.update_consented(user, cell, gender).await
    }

    /// [`Vicinity::update_location`] past its limits.
    async fn update_consented(
        &self,
        user: &UserId,
        cell: h3o::CellIndex,
        gender: Gender,
    ) -> ServiceResult<Deadlines> {
        self.require_consent(user, Feature::PeopleNearby).await?;
        let position = Position {
            user_id: user.clone(),
            feature: Feature::PeopleNearby,
            cell,
            gender,
        };
        let this = self.clone();
        let user = user.clone();
        let write = tokio::spawn(async move { this.write_checked(&user, position).await });
        write
            .await
            .map_err(|_| StoreError::new(StoreErrorKind::Unavailable, "updating a location"))?
    }

    /// The write of [`Vicinity::update_location`] and its second consent check.
    async fn write_checked(&self, user: &UserId, position: Position) -> ServiceResult<Deadlines> {
        // Checked even when the write failed: one that timed out may still land.
        let written = self
            .deps
            .locations
            .upsert(position, self.deps.retention)
            .await;
        if let Err(refused) = self.require_consent(user, Feature::PeopleNearby).await {
            // Fail closed: whether consent is gone or unreadable, the write does not stay. When
            // the consent store cannot even record the purge as owed, it runs all the same.
            let audit = (Action::UpdateUndone, Some(Feature::PeopleNearby));
            let features = [Feature::PeopleNearby];
            if self
                .purge_after(user, &features, async { Ok(()) }, audit)
                .await
                .is_err()
            {
                self.purge_now(user, &features).await?;
            }
            return Err(refused);
        }
        Ok(written?)
    }

    /// Lists other users near the viewer: the viewer's list rate counted (each page counts),
    /// one round trip to the location store (the viewer's own entry and the search), then one to the consent store (the viewer and every listed
    /// user must hold GRANTED consent; the others are dropped).
    #[instrument(skip_all, fields(limit = list.limit))]
    pub async fn list_nearby(&self, list: &ListNearby) -> ServiceResult<NearbyPage> {
        // The list rate and the viewer's own entry in one round trip (one script on a single
        // Redis): the search starts from what it read.
        let lists = LimitKey::Lists(list.viewer.clone());
        let (admission, own) = self
            .deps
            .limits
            .admit_reading(
                &lists,
                self.deps.policy.lists,
                Feature::PeopleNearby,
                &list.viewer,
            )
            .await?;
        let now = admitted(admission, "lists")?;
        let binding = list.token_binding();
        let page = match &list.page_token {
            Some(text) => Some(
                PageToken::decode(text, &self.deps.secret, &binding)
                    .map_err(ServiceError::PageTokenInvalid)?,
            ),
            None => None,
        };
        let pinned_epoch = page.as_ref().map(|t| t.epoch);
        let request = NearbyRequest {
            viewer: list.viewer.clone(),
            max_distance_m: list.max_distance_m,
            limit: list.limit,
            gender_filter: list.gender_filter,
            exclude: list.exclude.clone(),
            secret: Arc::clone(&self.deps.secret),
            page,
        };
        let Some(own) = own.filter(|e| !e.left) else {
            self.require_consent(&list.viewer, Feature::PeopleNearby)
                .await?;
            return Err(ServiceError::LocationRequired);
        };
        let own_cell = own.position.cell;
        let result = self
            .deps
            .locations
            .nearby_at(&request, own_cell, now)
            .await?;
        // A token from before the previous epoch (by the store's clock) is refused: its
        // page would mix orders that no longer exist.
        if pinned_epoch.is_some_and(|epoch| epoch + 1 < result.current_epoch) {
            return Err(ServiceError::PageTokenExpired);
        }
        let next_page_token = match result.page.next {
            Some(cursor) => {
                let nonce = crate::random::bytes().map_err(StoreError::from)?;
                let token = PageToken {
                    epoch: result.epoch,
                    viewer_cell: result.viewer_cell,
                    cursor,
                };
                Some(token.encode(&self.deps.secret, &binding, nonce))
            }
            None => None,
        };
        let users = self.consented(&list.viewer, result.page.hits).await?;
        Ok(NearbyPage {
            users,
            next_page_token,
        })
    }

    /// Keeps the hits whose users hold GRANTED consent, after checking the viewer's own.
    async fn consented(&self, viewer: &UserId, hits: Vec<Hit>) -> ServiceResult<Vec<Hit>> {
        let mut users = Vec::with_capacity(hits.len() + 1);
        users.push(viewer.clone());
        users.extend(hits.iter().map(|h| h.user_id.clone()));
        let granted = self
            .deps
            .consents
            .granted_among(Feature::PeopleNearby, &users)
            .await?;
        if !granted.first().copied().unwrap_or(false) {
            return Err(ServiceError::ConsentRequired(Feature::PeopleNearby));
        }
        Ok(hits
            .into_iter()
            .zip(granted.into_iter().skip(1))
            .filter_map(|(hit, ok)| ok.then_some(hit))
            .collect())
    }

    /// Leaves People Nearby: the entry stays until its new `purge_at` at the latest. `None`
    /// when the user was not in the feature. Renewing the deadlines uses the location, so it
    /// needs consent (SPEC §4.1); the store's leave creates nothing, so a withdrawal or Clear
    /// that lands after this check is never undone by it.
    #[instrument(skip_all)]
    pub async fn leave_nearby(&self, user: &UserId) -> ServiceResult<Option<Deadlines>> {
        self.require_consent(user, Feature::PeopleNearby).await?;
        // Detached, like an update: a cluster's two steps are never cut apart by the caller.
        let (locations, user, retention) = (
            self.deps.locations.clone(),
            user.clone(),
            self.deps.retention,
        );
        let leave = tokio::spawn(async move {
            locations
                .leave(Feature::PeopleNearby, &user, retention)
                .await
        });
        let left = leave
            .await
            .map_err(|_| StoreError::new(StoreErrorKind::Unavailable, "leaving"))??;
        Ok(left)
    }
}
