//! `vicinity places compile`: the operator's GeoJSON list of sensitive places and/or an
//! OpenStreetMap extract, tiled to the grid's H3 cells with a margin, written as a
//! versioned, content-hashed policy file.
//!
//! Input: a GeoJSON `FeatureCollection` whose features have a `category` property (one of
//! [`Category::as_str`]) and a `Point` (with an optional `radius_m`, the place's extent:
//! default [`DEFAULT_RADIUS_M`]), a `Polygon` or a `MultiPolygon` geometry, in WGS 84
//! longitude/latitude as GeoJSON has it. Each place is tiled with every cell that touches it
//! (h3o's `ContainmentMode::Covers`), then grown by `margin` rings of cells, so a position
//! snapped just outside the place is treated as inside.

use std::collections::{BTreeMap, HashMap, HashSet};

use geo::{Area, Coord, LineString, Polygon};
use h3o::{
    CellIndex, Resolution,
    geom::{ContainmentMode, TilerBuilder},
};
use osmpbf::{Element, ElementReader, RelMemberType};
use ring::digest;
use serde_json::Value;

use super::{Action, Category, MAGIC, PolicyError};

/// The extent of a place given as a point, unless its `radius_m` says otherwise.
pub const DEFAULT_RADIUS_M: f64 = 50.0;

/// The largest `radius_m` a point may have.
pub const MAX_RADIUS_M: f64 = 5_000.0;

/// The most cells one place may cover (a polygon drawn around a whole city by mistake is
/// refused, not tiled for minutes).
pub const MAX_CELLS_PER_PLACE: usize = 100_000;

/// The most margin rings.
pub const MAX_MARGIN: u32 = 5;

/// The sides of the polygon a point's circle is drawn as.
const CIRCLE_SIDES: usize = 32;

/// The cells of every place in a GeoJSON `text` at `resolution`, grown by `margin` rings. A
/// cell claimed by a shelter and by another place is the shelter's.
pub fn from_geojson(
    text: &str,
    resolution: Resolution,
    margin: u32,
) -> Result<Vec<(CellIndex, Category)>, PolicyError> {
    check_margin(margin)?;
    let json: Value = serde_json::from_str(text)
        .map_err(|e| PolicyError(format!("not JSON (line {})", e.line())))?;
    let features = json["features"]
        .as_array()
        .filter(|_| json["type"] == "FeatureCollection")
        .ok_or_else(|| PolicyError("not a GeoJSON FeatureCollection".into()))?;
    let mut cells: BTreeMap<CellIndex, Category> = BTreeMap::new();
    for (i, feature) in features.iter().enumerate() {
        let bad = |what: &str| PolicyError(format!("feature {i}: {what}"));
        let category = feature["properties"]["category"]
            .as_str()
            .and_then(Category::parse)
            .ok_or_else(|| {
                let names: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
                bad(&format!("its category must be one of {}", names.join(", ")))
            })?;
        for polygon in polygons(feature).map_err(|e| bad(&e))? {
            for cell in tile(polygon, resolution, margin).map_err(|e| bad(&e))? {
                keep(&mut cells, cell, category);
            }
        }
    }
    Ok(cells.into_iter().collect())
}

/// The polygons of a feature: its polygons, or the circle of its point.
fn polygons(feature: &Value) -> Result<Vec<Polygon>, String> {
    let geometry = &feature["geometry"];
    let coordinates = &geometry["coordinates"];
    match geometry["type"].as_str() {
        Some("Point") => {
            let [lng, lat] = position(coordinates)?;
            let radius = match &feature["properties"]["radius_m"] {
                Value::Null => DEFAULT_RADIUS_M,
                r => r
                    .as_f64()
                    .filter(|r| *r > 0.0 && *r <= MAX_RADIUS_M)
                    .ok_or(format!(
                        "radius_m must be above 0 and at most {MAX_RADIUS_M}"
                    ))?,
            };
            Ok(vec![circle(lat, lng, radius)])
        }
        Some("Polygon") => Ok(vec![polygon(coordinates)?]),
        Some("MultiPolygon") => coordinates
            .as_array()
            .ok_or("a MultiPolygon needs coordinates")?
            .iter()
            .map(polygon)
            .collect(),
        _ => Err("its geometry must be a Point, Polygon or MultiPolygon".into()),
    }
}

fn position(value: &Value) -> Result<[f64; 2], String> {
    match value.as_array().map(Vec::as_slice) {
        Some([lng, lat, ..]) => match (lng.as_f64(), lat.as_f64()) {
            (Some(lng), Some(lat)) if lat.abs() <= 90.0 && lng.abs() <= 180.0 => Ok([lng, lat]),
            _ => Err("a position is not [longitude, latitude] in range".into()),
        },
        _ => Err("a position is not [longitude, latitude]".into()),
    }
}

/// A GeoJSON polygon (its exterior ring; holes are covered too: a courtyard of a clinic is
/// the clinic's).
fn polygon(value: &Value) -> Result<Polygon, String> {
    let exterior = value
        .as_array()
        .and_then(|rings| rings.first())
        .and_then(Value::as_array)
        .ok_or("a Polygon needs an exterior ring")?;
    let ring = exterior
        .iter()
        .map(|p| position(p).map(|[x, y]| Coord { x, y }))
        .collect::<Result<Vec<_>, _>>()?;
    if ring.len() < 4 {
        return Err("a ring needs at least 4 positions".into());
    }
    Ok(Polygon::new(LineString::from(ring), Vec::new()))
}

/// A circle of `radius_m` around (lat, lng), as a polygon outside the true circle.
fn circle(lat: f64, lng: f64, radius_m: f64) -> Polygon {
    const EARTH_M: f64 = 6_371_008.8;
    // The polygon's sides pass inside the circle by up to cos(π/n); grow it so they do not.
    let r = radius_m / (std::f64::consts::PI / CIRCLE_SIDES as f64).cos();
    let dlat = (r / EARTH_M).to_degrees();
    let dlng = dlat / lat.to_radians().cos().max(1e-6);
    let ring: Vec<Coord> = (0..=CIRCLE_SIDES)
        .map(|i| {
            let a = std::f64::consts::TAU * (i % CIRCLE_SIDES) as f64 / CIRCLE_SIDES as f64;
            Coord {
                x: lng + dlng * a.cos(),
                y: (lat + dlat * a.sin()).clamp(-90.0, 90.0),
            }
        })
        .collect();
    Polygon::new(LineString::from(ring), Vec::new())
}

/// Every cell at `resolution` that touches `polygon`, grown by `margin` rings.
fn tile(polygon: Polygon, resolution: Resolution, margin: u32) -> Result<Vec<CellIndex>, String> {
    let mut tiler = TilerBuilder::new(resolution)
        .containment_mode(ContainmentMode::Covers)
        .build();
    tiler
        .add(polygon)
        .map_err(|e| format!("an invalid polygon ({e})"))?;
    if tiler.coverage_size_hint() > MAX_CELLS_PER_PLACE {
        return Err(format!("covers more than {MAX_CELLS_PER_PLACE} cells"));
    }
    let core: Vec<CellIndex> = tiler.into_coverage().collect();
    let mut cells: Vec<CellIndex> = core
        .iter()
        .flat_map(|c| c.grid_disk::<Vec<_>>(margin))
        .collect();
    cells.sort_unstable();
    cells.dedup();
    if cells.len() > MAX_CELLS_PER_PLACE {
        return Err(format!("covers more than {MAX_CELLS_PER_PLACE} cells"));
    }
    Ok(cells)
}

/// The most places an OpenStreetMap extract may give (a whole country's clinics and places
/// of worship fit; a planet file is refused, not read for hours).
pub const MAX_OSM_PLACES: usize = 2_000_000;

/// The most outer ways one multipolygon relation may join ([`rings`] is quadratic in them: at
/// most about 16 million comparisons); a larger one is refused, not covered in part.
pub const MAX_RELATION_WAYS: usize = 4_096;

/// The category an OpenStreetMap element's tags put it in, if any (docs/operations.md,
/// "Sensitive places", has the table).
pub fn classify<'a>(tags: impl Iterator<Item = (&'a str, &'a str)>) -> Option<Category> {
    let tags: Vec<(&str, &str)> = tags.collect();
    let has = |key: &str, value: &str| tags.iter().any(|&(k, v)| k == key && v == value);
    let value = |key: &str| tags.iter().find(|&&(k, _)| k == key).map(|&(_, v)| v);
    let speciality = value("healthcare:speciality").unwrap_or_default();
    if has("amenity", "social_facility") && has("social_facility", "shelter") {
        return Some(Category::Shelter);
    }
    if has("amenity", "place_of_worship") {
        return Some(Category::Worship);
    }
    if value("military").is_some() || has("landuse", "military") {
        return Some(Category::Military);
    }
    let addiction = has("counselling", "addiction")
        || has("social_facility:for", "drug_addicted")
        || speciality.contains("addiction");
    if addiction {
        return Some(Category::Addiction);
    }
    let reproductive = matches!(value("healthcare"), Some("birthing_centre" | "midwife"))
        || ["gynaecology", "fertility", "abortion", "reproductive"]
            .iter()
            .any(|s| speciality.contains(s));
    if reproductive {
        return Some(Category::ReproductiveHealth);
    }
    let mental = matches!(value("healthcare"), Some("psychotherapist"))
        || has("counselling", "psychiatry")
        || speciality.contains("psychiatry");
    if mental {
        return Some(Category::MentalHealth);
    }
    let medical = matches!(value("amenity"), Some("hospital" | "clinic" | "doctors"))
        || value("healthcare").is_some();
    medical.then_some(Category::Health)
}

/// The places of an OpenStreetMap extract (`.osm.pbf`): tagged nodes as points of
/// [`DEFAULT_RADIUS_M`], tagged closed ways as polygons (an open way's first node as a
/// point), and tagged multipolygon relations as the rings their outer ways join into (their
/// inner rings, holes, are covered too: a courtyard of a hospital is the hospital's; a ring
/// that does not close counts as its first node's point). Tiled as [`from_geojson`] tiles.
pub fn from_osm(
    path: &std::path::Path,
    resolution: Resolution,
    margin: u32,
) -> Result<Vec<(CellIndex, Category)>, PolicyError> {
    check_margin(margin)?;
    let (points, mut ways, relations) = osm_places(path)?;
    if relations
        .iter()
        .any(|(_, outer)| outer.len() > MAX_RELATION_WAYS)
    {
        return Err(PolicyError(format!(
            "a multipolygon relation of more than {MAX_RELATION_WAYS} outer ways"
        )));
    }
    let members = osm_ways(path, &relations)?;
    for (category, outer) in relations {
        let parts = outer
            .iter()
            .filter_map(|id| members.get(id).cloned())
            .collect();
        ways.extend(rings(parts).into_iter().map(|ring| (category, ring)));
    }
    let wanted: HashSet<i64> = ways
        .iter()
        .flat_map(|(_, refs)| refs.iter().copied())
        .collect();
    let at = osm_positions(path, &wanted)?;
    let mut cells: BTreeMap<CellIndex, Category> = BTreeMap::new();
    let mut add = |polygon: Polygon, category: Category| -> Result<(), PolicyError> {
        for cell in tile(polygon, resolution, margin).map_err(PolicyError)? {
            keep(&mut cells, cell, category);
        }
        Ok(())
    };
    for (category, lat, lon) in points {
        add(circle(lat, lon, DEFAULT_RADIUS_M), category)?;
    }
    for (category, refs) in ways {
        let ring: Vec<Coord> = refs
            .iter()
            .filter_map(|id| at.get(id))
            .map(|&(lat, lon)| Coord { x: lon, y: lat })
            .collect();
        let closed = refs.len() >= 4 && refs.first() == refs.last() && ring.len() == refs.len();
        if let Some(shape) = way_shape(ring, closed) {
            add(shape, category)?;
        }
    }
    Ok(cells.into_iter().collect())
}

/// The polygon of a way's (or a joined ring's) positions when it is `closed` and encloses an
/// area; else a point of [`DEFAULT_RADIUS_M`] at its first position (a ring that folds back
/// on itself would tile to nothing and lose the place); `None` without any position.
fn way_shape(ring: Vec<Coord>, closed: bool) -> Option<Polygon> {
    let first = *ring.first()?;
    let polygon = Polygon::new(LineString::from(ring), Vec::new());
    if closed && polygon.unsigned_area() > 0.0 {
        return Some(polygon);
    }
    Some(circle(first.y, first.x, DEFAULT_RADIUS_M))
}

/// The tagged places of an extract: points (category, lat, lon), ways (category, node ids)
/// and multipolygon relations (category, the ids of their outer ways).
type OsmPlaces = (
    Vec<(Category, f64, f64)>,
    Vec<(Category, Vec<i64>)>,
    Vec<(Category, Vec<i64>)>,
);

/// Joins ways (node ids each) into closed rings, end to end, either way round; what does not
/// close is returned as it was joined (the caller takes its first node as a point).
pub fn rings(mut ways: Vec<Vec<i64>>) -> Vec<Vec<i64>> {
    let mut out = Vec::new();
    while let Some(mut ring) = ways.pop() {
        while ring.len() > 1 && ring.first() != ring.last() {
            let end = *ring.last().unwrap_or(&0);
            let Some(next) = ways
                .iter()
                .position(|w| w.first() == Some(&end) || w.last() == Some(&end))
            else {
                break;
            };
            let mut way = ways.swap_remove(next);
            if way.first() != Some(&end) {
                way.reverse();
            }
            ring.extend(way.into_iter().skip(1));
        }
        out.push(ring);
    }
    out
}

fn unreadable(e: osmpbf::Error) -> PolicyError {
    PolicyError(format!("not a readable .osm.pbf ({e})"))
}

/// The extract's tagged nodes, ways and multipolygon relations, at most [`MAX_OSM_PLACES`]
/// of them.
fn osm_places(path: &std::path::Path) -> Result<OsmPlaces, PolicyError> {
    let (mut points, mut ways, mut relations) = (Vec::new(), Vec::new(), Vec::new());
    let mut too_many = false;
    each_element(path, |element| {
        if points.len() + ways.len() + relations.len() >= MAX_OSM_PLACES {
            too_many = true;
            return;
        }
        match element {
            Element::Node(n) => {
                if let Some(c) = classify(n.tags()) {
                    points.push((c, n.lat(), n.lon()));
                }
            }
            Element::DenseNode(n) => {
                if let Some(c) = classify(n.tags()) {
                    points.push((c, n.lat(), n.lon()));
                }
            }
            Element::Way(w) => {
                if let Some(c) = classify(w.tags()) {
                    ways.push((c, w.refs().collect()));
                }
            }
            Element::Relation(r) => {
                let multipolygon = r.tags().any(|tag| tag == ("type", "multipolygon"));
                if let Some(c) = classify(r.tags()).filter(|_| multipolygon) {
                    let outer = r.members().filter(|m| {
                        m.member_type == RelMemberType::Way && matches!(m.role(), Ok("outer" | ""))
                    });
                    let mut ways: Vec<i64> = outer.map(|m| m.member_id).collect();
                    // A way listed twice would double back on itself when joined.
                    ways.sort_unstable();
                    ways.dedup();
                    relations.push((c, ways));
                }
            }
        }
    })?;
    if too_many {
        return Err(PolicyError(format!("more than {MAX_OSM_PLACES} places")));
    }
    Ok((points, ways, relations))
}

/// The node ids of the ways `relations` name (their outer members).
fn osm_ways(
    path: &std::path::Path,
    relations: &[(Category, Vec<i64>)],
) -> Result<HashMap<i64, Vec<i64>>, PolicyError> {
    let wanted: HashSet<i64> = relations
        .iter()
        .flat_map(|(_, ids)| ids.iter().copied())
        .collect();
    let mut found = HashMap::new();
    if wanted.is_empty() {
        return Ok(found);
    }
    each_element(path, |element| {
        if let Element::Way(w) = element
            && wanted.contains(&w.id())
        {
            found.insert(w.id(), w.refs().collect());
        }
    })?;
    Ok(found)
}

/// The positions of the `wanted` nodes of the extract.
fn osm_positions(
    path: &std::path::Path,
    wanted: &HashSet<i64>,
) -> Result<HashMap<i64, (f64, f64)>, PolicyError> {
    let mut at = HashMap::new();
    if wanted.is_empty() {
        return Ok(at);
    }
    each_element(path, |element| {
        let (id, lat, lon) = match element {
            Element::Node(n) => (n.id(), n.lat(), n.lon()),
            Element::DenseNode(n) => (n.id(), n.lat(), n.lon()),
            _ => return,
        };
        if wanted.contains(&id) {
            at.insert(id, (lat, lon));
        }
    })?;
    Ok(at)
}

/// Reads every element of the extract at `path`, in order.
fn each_element(path: &std::path::Path, read: impl FnMut(Element<'_>)) -> Result<(), PolicyError> {
    let reader = ElementReader::from_path(path).map_err(unreadable)?;
    reader.for_each(read).map_err(unreadable)
}

/// Refuses a margin over [`MAX_MARGIN`].
fn check_margin(margin: u32) -> Result<(), PolicyError> {
    if margin > MAX_MARGIN {
        return Err(PolicyError(format!(
            "a margin of at most {MAX_MARGIN} rings"
        )));
    }
    Ok(())
}

/// Lists `cell` as `category`'s; a cell claimed by a shelter and another place is the
/// shelter's.
fn keep(cells: &mut BTreeMap<CellIndex, Category>, cell: CellIndex, category: Category) {
    let kept = cells.entry(cell).or_insert(category);
    if category == Category::Shelter {
        *kept = category;
    }
}

/// The policy file of `listed` cells at `resolution`, coarsened to `coarse`, with `actions`
/// overriding each category's default.
pub fn render(
    listed: &[(CellIndex, Category)],
    resolution: Resolution,
    coarse: Resolution,
    actions: &[(Category, Action)],
) -> String {
    let mut body = format!(
        "resolution {}\ncoarse-resolution {}\n",
        u8::from(resolution),
        u8::from(coarse)
    );
    for category in Category::ALL {
        let action = actions
            .iter()
            .find(|(c, _)| *c == category)
            .map_or(Action::default(), |(_, a)| *a);
        body.push_str(&format!("action {category} {}\n", action.as_str()));
    }
    // One line per cell: a cell listed twice is a shelter's if either place is one.
    let mut merged: BTreeMap<CellIndex, Category> = BTreeMap::new();
    for &(cell, category) in listed {
        keep(&mut merged, cell, category);
    }
    for (cell, category) in merged {
        body.push_str(&format!("{cell} {category}\n"));
    }
    let hash = hex::encode(digest::digest(&digest::SHA256, body.as_bytes()));
    format!("{MAGIC}\nsha256 {hash}\n{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collection(features: &str) -> String {
        format!(r#"{{"type":"FeatureCollection","features":[{features}]}}"#)
    }

    #[test]
    fn a_point_covers_its_radius_and_the_margin() {
        let point = r#"{"type":"Feature","properties":{"category":"health","radius_m":80},
            "geometry":{"type":"Point","coordinates":[116.4,39.9]}}"#;
        let bare = from_geojson(&collection(point), Resolution::Nine, 0).unwrap();
        let centre = h3o::LatLng::new(39.9, 116.4)
            .unwrap()
            .to_cell(Resolution::Nine);
        assert!(
            bare.iter()
                .any(|(c, k)| *c == centre && *k == Category::Health)
        );
        let grown = from_geojson(&collection(point), Resolution::Nine, 1).unwrap();
        assert!(grown.len() > bare.len());
        for ring in centre.grid_disk::<Vec<_>>(1) {
            assert!(
                grown.iter().any(|(c, _)| *c == ring),
                "the margin holds the first ring"
            );
        }
    }

    #[test]
    fn a_polygon_is_covered_and_a_shelter_wins_a_shared_cell() {
        let ring = "[[116.40,39.90],[116.41,39.90],[116.41,39.91],[116.40,39.91],[116.40,39.90]]";
        let features = format!(
            r#"{{"type":"Feature","properties":{{"category":"worship"}},
                "geometry":{{"type":"Polygon","coordinates":[{ring}]}}}},
               {{"type":"Feature","properties":{{"category":"shelter"}},
                "geometry":{{"type":"Point","coordinates":[116.405,39.905]}}}}"#
        );
        let cells = from_geojson(&collection(&features), Resolution::Nine, 0).unwrap();
        assert!(cells.len() > 10, "{}", cells.len());
        let middle = h3o::LatLng::new(39.905, 116.405)
            .unwrap()
            .to_cell(Resolution::Nine);
        let at = cells.iter().find(|(c, _)| *c == middle).unwrap();
        assert_eq!(at.1, Category::Shelter);
    }

    /// A multipolygon's outer ways join into closed rings end to end, whichever way each
    /// runs; two rings stay two; a ring that cannot close is kept as joined.
    #[test]
    fn ways_join_into_rings() {
        let closed = |r: &Vec<i64>| r.len() >= 4 && r.first() == r.last();
        let one = rings(vec![vec![1, 2, 3], vec![1, 4, 3]]);
        assert_eq!(one.len(), 1, "{one:?}");
        assert!(closed(&one[0]), "{one:?}");
        let mut nodes = one[0].clone();
        nodes.sort_unstable();
        nodes.dedup();
        assert_eq!(nodes, [1, 2, 3, 4]);
        let two = rings(vec![vec![1, 2, 3, 1], vec![5, 6], vec![7, 5], vec![6, 7]]);
        assert_eq!(two.len(), 2, "{two:?}");
        assert!(two.iter().all(closed), "{two:?}");
        let open = rings(vec![vec![1, 2], vec![3, 4]]);
        assert_eq!(open.len(), 2);
        assert!(!open.iter().any(closed), "{open:?}");
    }

    /// A closed way that folds back on itself (no area) is kept as a point at its first
    /// position, not lost; an open one too; a closed one with an area is its polygon.
    #[test]
    fn a_way_without_an_area_is_a_point() {
        use geo::Contains;
        let at = |pairs: &[(f64, f64)]| pairs.iter().map(|&(y, x)| Coord { x, y }).collect();
        let square = [
            (39.0, 116.0),
            (39.0, 116.01),
            (39.01, 116.01),
            (39.01, 116.0),
        ];
        let mut closed: Vec<Coord> = at(&square);
        closed.push(closed[0]);
        let polygon = way_shape(closed, true).expect("a shape");
        assert!(
            (polygon.unsigned_area() - 1e-4).abs() < 1e-9,
            "the square itself"
        );
        let folded = at(&[
            (39.0, 116.0),
            (39.0, 116.01),
            (39.01, 116.01),
            (39.0, 116.01),
            (39.0, 116.0),
        ]);
        let point = way_shape(folded, true).expect("a shape");
        assert!(point.unsigned_area() > 0.0);
        assert!(
            point.contains(&Coord { x: 116.0, y: 39.0 }),
            "around the first node"
        );
        assert!(way_shape(Vec::new(), true).is_none());
    }

    #[test]
    fn openstreetmap_tags_select_the_categories() {
        let of = |tags: &[(&'static str, &'static str)]| classify(tags.iter().copied());
        assert_eq!(of(&[("amenity", "clinic")]), Some(Category::Health));
        assert_eq!(of(&[("healthcare", "dentist")]), Some(Category::Health));
        assert_eq!(
            of(&[("amenity", "place_of_worship"), ("religion", "x")]),
            Some(Category::Worship)
        );
        assert_eq!(
            of(&[
                ("amenity", "social_facility"),
                ("social_facility", "shelter")
            ]),
            Some(Category::Shelter)
        );
        assert_eq!(
            of(&[("healthcare", "birthing_centre")]),
            Some(Category::ReproductiveHealth)
        );
        assert_eq!(
            of(&[
                ("healthcare", "clinic"),
                ("healthcare:speciality", "gynaecology;fertility")
            ]),
            Some(Category::ReproductiveHealth)
        );
        assert_eq!(
            of(&[("healthcare", "psychotherapist")]),
            Some(Category::MentalHealth)
        );
        assert_eq!(
            of(&[("healthcare", "counselling"), ("counselling", "addiction")]),
            Some(Category::Addiction)
        );
        assert_eq!(of(&[("landuse", "military")]), Some(Category::Military));
        assert_eq!(
            of(&[("amenity", "social_facility")]),
            None,
            "a shelter says so"
        );
        assert_eq!(of(&[("amenity", "cafe")]), None);
        assert_eq!(of(&[]), None);
    }

    #[test]
    fn bad_input_is_refused_naming_the_feature() {
        let unknown = r#"{"type":"Feature","properties":{"category":"bakery"},
            "geometry":{"type":"Point","coordinates":[116.4,39.9]}}"#;
        let err = from_geojson(&collection(unknown), Resolution::Nine, 1).unwrap_err();
        assert!(
            err.to_string().starts_with("feature 0: its category"),
            "{err}"
        );
        let wide = r#"{"type":"Feature","properties":{"category":"military"},
            "geometry":{"type":"Polygon","coordinates":[[[100,30],[120,30],[120,45],[100,45],[100,30]]]}}"#;
        let err = from_geojson(&collection(wide), Resolution::Nine, 1).unwrap_err();
        assert!(err.to_string().contains("covers more than"), "{err}");
        let far = r#"{"type":"Feature","properties":{"category":"health"},
            "geometry":{"type":"Point","coordinates":[200,39.9]}}"#;
        assert!(from_geojson(&collection(far), Resolution::Nine, 1).is_err());
        assert!(from_geojson("[]", Resolution::Nine, 1).is_err());
        assert!(from_geojson(&collection(""), Resolution::Nine, 9).is_err());
    }
}
