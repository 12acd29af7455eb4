//! Smoke checks of the bundled place data: loads, Harbin and Guangzhou facts.

use almanac::campaign::ClimateMetric;
use almanac::geo::{Geo, LocationHints, PlaceSource};

#[test]
fn harbin_and_guangzhou_resolve_from_every_hint() {
    let geo = Geo::bundled();
    let harbin = geo.find_city("哈尔滨", None).unwrap();
    assert_eq!(geo.city(harbin).name, "Harbin");
    assert_eq!(geo.city(harbin).lang_tag, "cmn-Hans");
    let guangzhou = geo.find_city("Guangzhou", Some("广东")).unwrap();
    assert_eq!(geo.city(guangzhou).lang_tag, "yue-Hans");
    let by_phone = geo
        .resolve(&LocationHints { phone: Some("+86 139 0451 1234"), ..Default::default() })
        .unwrap();
    assert_eq!((by_phone.city, by_phone.source), (harbin, PlaceSource::Phone));
    let by_landline =
        geo.resolve(&LocationHints { phone: Some("020-8888 1234"), ..Default::default() }).unwrap();
    assert_eq!(by_landline.city, guangzhou);
    let by_point = geo
        .resolve(&LocationHints { coordinates: Some((45.8, 126.5)), ..Default::default() })
        .unwrap();
    assert_eq!(by_point.city, harbin);
    assert!(geo.normal(harbin, 244, ClimateMetric::MeanTempC).unwrap() > 17.0);
    assert!(geo.normal(harbin, 273, ClimateMetric::MeanTempC).unwrap() < 17.0);
    assert_eq!(geo.cities().filter(|(_, c)| c.country == "CN").count(), 337);
}
