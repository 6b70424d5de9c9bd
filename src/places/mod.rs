//! Sensitive places (contract §4.8): a policy compiled ahead of time (`vicinity places compile`,
//! [`compile`]) lists the grid cells of sensitive places; a position that enters the service
//! (UpdateLocation, Shake) is placed by it before anything is stored or matched.
//!
//! Every position in a *coarse parent* (an H3 cell at the policy's coarse resolution, 7 by
//! default: about 5 km²) that holds a listed cell is stored at the parent's representative
//! cell, the same for every user, so whether a user is inside the place or elsewhere in the
//! parent (mostly ordinary streets and homes) looks the same to everyone else, before, during
//! and after the visit. A position in a listed cell whose category hides is not placed at all:
//! UpdateLocation stores nothing (the previous entry, if any, ages as if the phone had gone
//! quiet) and Shake answers as if nobody shook, after its window. docs/privacy.md argues what
//! this protects against and what it cannot.
//!
//! The lookup is two hash probes per call. The policy in force can be swapped at any time
//! ([`Places::swap`], on SIGHUP): a call uses the one it read first.

pub mod compile;

use std::{
    collections::{HashMap, HashSet},
    fmt,
    io::Read,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
};

use h3o::{CellIndex, Resolution};
use ring::digest;

/// The first line of a policy file.
const MAGIC: &str = "vicinity-places 1";

/// The largest policy file read, so a wrong path cannot exhaust memory (about 4 million
/// cells).
pub const MAX_POLICY_BYTES: u64 = 128 << 20;

/// What a place is (contract §4.8: the categories of the FTC's 2024 X-Mode and InMarket orders and
/// of GDPR Art. 9 inference).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    /// Hospitals, clinics, doctors: medical facilities.
    Health,
    /// Reproductive-health and fertility facilities.
    ReproductiveHealth,
    /// Mental-health services.
    MentalHealth,
    /// Addiction and recovery services.
    Addiction,
    /// Places of worship.
    Worship,
    /// Shelters: domestic violence, homeless, refugee.
    Shelter,
    /// Military sites.
    Military,
}

impl Category {
    /// Every category, in file order.
    pub const ALL: [Category; 7] = [
        Category::Health,
        Category::ReproductiveHealth,
        Category::MentalHealth,
        Category::Addiction,
        Category::Worship,
        Category::Shelter,
        Category::Military,
    ];

    /// The name in policy files, GeoJSON and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Health => "health",
            Category::ReproductiveHealth => "reproductive_health",
            Category::MentalHealth => "mental_health",
            Category::Addiction => "addiction",
            Category::Worship => "worship",
            Category::Shelter => "shelter",
            Category::Military => "military",
        }
    }

    /// Parses [`Category::as_str`]'s output.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a position inside a listed place gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Action {
    /// Stored at the coarse parent's representative cell, as every position of the parent
    /// (the default for every category).
    #[default]
    Coarsen,
    /// Not placed: nothing stored, matched or shown (`places compile --hide CATEGORY`). The
    /// user's own export shows the entry did not move, so an account can tell a hidden cell
    /// by trying it (docs/privacy.md).
    Hide,
}

impl Action {
    /// The name in policy files.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Coarsen => "coarsen",
            Action::Hide => "hide",
        }
    }

    /// Parses [`Action::as_str`]'s output.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "coarsen" => Some(Action::Coarsen),
            "hide" => Some(Action::Hide),
            _ => None,
        }
    }
}

/// Where the policy puts a snapped position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Where it is: no listed place in its coarse parent.
    Exact(CellIndex),
    /// At the coarse parent's representative cell; `inside` names the category when the
    /// position is in a listed place itself (not only in its parent).
    Coarse {
        /// The representative cell.
        cell: CellIndex,
        /// The category of the listed place the position is in, if it is in one.
        inside: Option<Category>,
    },
    /// Not placed: inside a place of a hidden category.
    Hidden(Category),
}

impl Placement {
    /// The label of the counter of placed calls (`exact` is not counted).
    pub fn label(&self) -> Option<(&'static str, &'static str)> {
        match self {
            Placement::Exact(_) => None,
            Placement::Coarse { inside: None, .. } => Some(("parent", "coarsen")),
            Placement::Coarse {
                inside: Some(c), ..
            } => Some((c.as_str(), "coarsen")),
            Placement::Hidden(c) => Some((c.as_str(), "hide")),
        }
    }
}

/// A policy that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub(crate) String);

/// A compiled place policy.
pub struct Policy {
    version: String,
    resolution: Resolution,
    coarse: Resolution,
    actions: HashMap<Category, Action>,
    listed: HashMap<CellIndex, Category>,
    /// Coarse parents holding a listed cell, each with its representative cell.
    parents: HashMap<CellIndex, CellIndex>,
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The list of places stays out of any output (a shelter's cells are secrets).
        f.debug_struct("Policy")
            .field("version", &self.version)
            .field("cells", &self.listed.len())
            .finish()
    }
}

impl Policy {
    /// The policy's version: the first 16 hex digits of the SHA-256 of its contents.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Listed cells.
    pub fn cells(&self) -> usize {
        self.listed.len()
    }

    /// The snapping resolution the policy was compiled for.
    pub fn resolution(&self) -> Resolution {
        self.resolution
    }

    /// Where the policy puts `cell` (a cell of the snapping grid).
    pub fn place(&self, cell: CellIndex) -> Placement {
        let Some(parent) = cell.parent(self.coarse) else {
            return Placement::Exact(cell);
        };
        let Some(&representative) = self.parents.get(&parent) else {
            return Placement::Exact(cell);
        };
        match self.listed.get(&cell) {
            Some(&category) if self.actions[&category] == Action::Hide => {
                Placement::Hidden(category)
            }
            inside => Placement::Coarse {
                cell: representative,
                inside: inside.copied(),
            },
        }
    }

    /// Whether this policy stores a position at `cell` itself: a cell it places exactly, or a
    /// coarse parent's representative. An entry stored at any other cell was stored before
    /// the policy listed its place, and is not listed until its user's next update re-places
    /// it (or its deadline deletes it).
    pub fn stores_at(&self, cell: CellIndex) -> bool {
        match self.place(cell) {
            Placement::Exact(_) => true,
            Placement::Coarse { cell: stored, .. } => stored == cell,
            Placement::Hidden(_) => false,
        }
    }

    /// [`Self::load`], refusing a policy compiled for another resolution than `resolution`
    /// (the grid's).
    pub fn load_for(path: &Path, resolution: Resolution) -> Result<Self, PolicyError> {
        let policy = Self::load(path)?;
        if policy.resolution() != resolution {
            return Err(PolicyError(format!(
                "{}: compiled for resolution {}, the grid is at {}",
                path.display(),
                u8::from(policy.resolution()),
                u8::from(resolution)
            )));
        }
        Ok(policy)
    }

    /// Reads a policy file written by [`compile::write`], checking its content hash.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let bad = |what: String| PolicyError(format!("{}: {what}", path.display()));
        let unreadable = |e: std::io::Error| bad(format!("cannot be read ({})", e.kind()));
        // Bounded by what is read, not by what the file says its size is (a pipe says 0).
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|file| file.take(MAX_POLICY_BYTES + 1).read_to_string(&mut text))
            .map_err(unreadable)?;
        if text.len() as u64 > MAX_POLICY_BYTES {
            return Err(bad(format!("larger than {MAX_POLICY_BYTES} bytes")));
        }
        Self::parse(&text).map_err(|PolicyError(e)| bad(e))
    }

    /// [`Policy::load`] on a file's text.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let bad = |what: &str| PolicyError(what.to_owned());
        let (header, body) = text
            .split_once('\n')
            .and_then(|(magic, rest)| (magic == MAGIC).then_some(rest))
            .and_then(|rest| rest.split_once('\n'))
            .ok_or_else(|| {
                bad("not a vicinity place policy (compile one with `vicinity places compile`)")
            })?;
        let hash = hex::encode(digest::digest(&digest::SHA256, body.as_bytes()));
        if header != format!("sha256 {hash}") {
            return Err(bad("its content hash does not match: truncated or altered"));
        }
        let mut resolution = None;
        let mut coarse = None;
        let mut actions: HashMap<Category, Action> =
            Category::ALL.map(|c| (c, Action::default())).into();
        let mut listed = HashMap::new();
        for line in body.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            match fields[..] {
                ["resolution", r] => resolution = parse_resolution(r),
                ["coarse-resolution", r] => coarse = parse_resolution(r),
                ["action", category, action] => {
                    let category =
                        Category::parse(category).ok_or_else(|| bad("unknown category"))?;
                    let action = Action::parse(action).ok_or_else(|| bad("unknown action"))?;
                    actions.insert(category, action);
                }
                [cell, category] => {
                    let cell = u64::from_str_radix(cell, 16)
                        .ok()
                        .and_then(|c| CellIndex::try_from(c).ok())
                        .ok_or_else(|| bad("a line holds no H3 cell"))?;
                    let category =
                        Category::parse(category).ok_or_else(|| bad("unknown category"))?;
                    listed.insert(cell, category);
                }
                _ => return Err(bad("a line is not one of the policy's")),
            }
        }
        let (Some(resolution), Some(coarse)) = (resolution, coarse) else {
            return Err(bad("no resolution or coarse resolution"));
        };
        if coarse >= resolution {
            return Err(bad("the coarse resolution is not coarser than the grid's"));
        }
        if listed.keys().any(|c| c.resolution() != resolution) {
            return Err(bad("a cell is not at the policy's resolution"));
        }
        let parents = representatives(&listed, &actions, resolution, coarse);
        Ok(Self {
            version: hash[..16].to_owned(),
            resolution,
            coarse,
            actions,
            listed,
            parents,
        })
    }
}

fn parse_resolution(text: &str) -> Option<Resolution> {
    text.parse::<u8>()
        .ok()
        .and_then(|r| Resolution::try_from(r).ok())
}

/// Each coarse parent of a listed cell, with its representative: its centre child at the
/// grid's resolution if no place lists it, else the first of its children in H3 order that no
/// place lists (nobody is shown inside a place); in a parent listed whole, the first child not
/// in a hidden place (nobody is shown at a hidden one), else the centre.
fn representatives(
    listed: &HashMap<CellIndex, Category>,
    actions: &HashMap<Category, Action>,
    resolution: Resolution,
    coarse: Resolution,
) -> HashMap<CellIndex, CellIndex> {
    let parents: HashSet<CellIndex> = listed.keys().filter_map(|c| c.parent(coarse)).collect();
    let hidden = |c: &CellIndex| listed.get(c).is_some_and(|k| actions[k] == Action::Hide);
    parents
        .into_iter()
        .filter_map(|parent| {
            let centre = parent.center_child(resolution)?;
            let candidates = || std::iter::once(centre).chain(parent.children(resolution));
            let chosen = candidates()
                .find(|c| !listed.contains_key(c))
                .or_else(|| candidates().find(|c| !hidden(c)))
                .unwrap_or(centre);
            Some((parent, chosen))
        })
        .collect()
}

/// The policy in force, swapped whole on reload; `None`: no policy.
#[derive(Debug, Default)]
pub struct Places {
    current: RwLock<Option<Arc<Policy>>>,
    path: Option<PathBuf>,
}

impl Places {
    /// No policy: every position is exact.
    pub fn none() -> Self {
        Self::default()
    }

    /// `policy`, read from `path`, and reloaded from there by [`Places::reload`].
    pub fn from_file(policy: Policy, path: &Path) -> Self {
        Self {
            current: RwLock::new(Some(Arc::new(policy))),
            path: Some(path.to_owned()),
        }
    }

    /// The policy in force.
    pub fn current(&self) -> Option<Arc<Policy>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Where the policy puts `cell`.
    pub fn place(&self, cell: CellIndex) -> Placement {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        match current.as_deref() {
            Some(policy) => policy.place(cell),
            None => Placement::Exact(cell),
        }
    }

    /// Reads the policy's file again and puts it in force if it is compiled for
    /// `resolution`; on an error the policy in force stays. `None` when there is no file to
    /// reload.
    pub fn reload_checked(
        &self,
        resolution: Resolution,
    ) -> Option<Result<Arc<Policy>, PolicyError>> {
        let path = self.path.as_ref()?;
        Some(Policy::load_for(path, resolution).map(|policy| {
            let policy = Arc::new(policy);
            *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(policy.clone());
            policy
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell_at(lat: f64, lng: f64) -> CellIndex {
        h3o::LatLng::new(lat, lng)
            .unwrap()
            .to_cell(Resolution::Nine)
    }

    fn policy_of(listed: &[(CellIndex, Category)]) -> Policy {
        let hide = [(Category::Shelter, Action::Hide)];
        Policy::parse(&compile::render(
            listed,
            Resolution::Nine,
            Resolution::Seven,
            &hide,
        ))
        .unwrap()
    }

    #[test]
    fn every_position_of_a_parent_with_a_place_is_shown_at_one_cell() {
        let clinic = cell_at(39.9, 116.4);
        let policy = policy_of(&[(clinic, Category::Health)]);
        let parent = clinic.parent(Resolution::Seven).unwrap();
        let Placement::Coarse {
            cell: shown,
            inside,
        } = policy.place(clinic)
        else {
            panic!("the clinic is coarsened")
        };
        assert_eq!(inside, Some(Category::Health));
        assert_ne!(shown, clinic, "nobody is shown inside the place");
        for other in parent.children(Resolution::Nine).filter(|c| *c != clinic) {
            assert_eq!(
                policy.place(other),
                Placement::Coarse {
                    cell: shown,
                    inside: None
                },
                "the rest of the parent looks the same"
            );
        }
        let far = cell_at(40.3, 116.9);
        assert_eq!(policy.place(far), Placement::Exact(far));
    }

    #[test]
    fn every_category_is_coarsened_unless_the_policy_hides_it() {
        let shelter = cell_at(39.95, 116.35);
        let text = compile::render(
            &[(shelter, Category::Shelter)],
            Resolution::Nine,
            Resolution::Seven,
            &[],
        );
        let policy = Policy::parse(&text).unwrap();
        assert!(matches!(
            policy.place(shelter),
            Placement::Coarse {
                inside: Some(Category::Shelter),
                ..
            }
        ));
        assert_eq!(
            format!("{policy:?}"),
            format!("Policy {{ version: {:?}, cells: 1 }}", policy.version()),
            "no cell in any output"
        );
    }

    #[test]
    fn a_parent_listed_whole_shows_nobody_at_a_hidden_place() {
        let parent = cell_at(39.9, 116.4).parent(Resolution::Seven).unwrap();
        let centre = parent.center_child(Resolution::Nine).unwrap();
        let listed: Vec<_> = parent
            .children(Resolution::Nine)
            .map(|c| {
                (
                    c,
                    if c == centre {
                        Category::Shelter
                    } else {
                        Category::Worship
                    },
                )
            })
            .collect();
        let policy = policy_of(&listed);
        let other = parent
            .children(Resolution::Nine)
            .find(|c| *c != centre)
            .unwrap();
        assert_eq!(policy.place(centre), Placement::Hidden(Category::Shelter));
        let Placement::Coarse { cell, .. } = policy.place(other) else {
            panic!("the rest of the parent is coarsened")
        };
        assert_ne!(cell, centre, "not shown at the shelter");
    }

    #[test]
    fn a_shelter_is_hidden_and_its_parent_coarsened() {
        let shelter = cell_at(39.95, 116.35);
        let policy = policy_of(&[(shelter, Category::Shelter)]);
        assert_eq!(policy.place(shelter), Placement::Hidden(Category::Shelter));
        let beside = shelter.grid_disk::<Vec<_>>(1)[1];
        if beside.parent(Resolution::Seven) == shelter.parent(Resolution::Seven) {
            assert!(matches!(
                policy.place(beside),
                Placement::Coarse { inside: None, .. }
            ));
        }
    }

    #[test]
    fn an_altered_or_truncated_policy_is_refused() {
        let text = compile::render(
            &[(cell_at(39.9, 116.4), Category::Worship)],
            Resolution::Nine,
            Resolution::Seven,
            &[],
        );
        assert!(Policy::parse(&text).is_ok());
        let altered = text.replace("worship", "military");
        let err = Policy::parse(&altered).unwrap_err().to_string();
        assert!(err.contains("content hash"), "{err}");
        let truncated = &text[..text.len() - 5];
        assert!(Policy::parse(truncated).is_err());
        assert!(Policy::parse("hello\n").is_err());
    }

    #[test]
    fn the_version_is_the_content_hash() {
        let a = policy_of(&[(cell_at(39.9, 116.4), Category::Worship)]);
        let b = policy_of(&[(cell_at(39.9, 116.4), Category::Worship)]);
        let c = policy_of(&[(cell_at(39.9, 116.5), Category::Worship)]);
        assert_eq!(a.version(), b.version());
        assert_ne!(a.version(), c.version());
        assert_eq!(a.version().len(), 16);
    }
}
