//! Retention of OS images: keep the newest N images an OS definition produced, delete or hide the
//! older ones. The seed only listed them; here a plan is made first, shown (dry run), then applied.

use crate::catalog::RetentionAction;
use crate::openstack::image::{Image, ImageChange, ImageFilter};
use crate::openstack::{ApiError, Cloud};

/// The images of one definition, newest first, split into those kept and those retired.
#[derive(Clone, Debug)]
pub struct Plan {
    pub definition: String,
    pub action: RetentionAction,
    pub keep: Vec<Image>,
    pub retire: Vec<Image>,
}

/// Newest first by creation time; ties broken by name so the order is stable.
pub fn split(mut images: Vec<Image>, keep: u32) -> (Vec<Image>, Vec<Image>) {
    images.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| b.name.cmp(&a.name))
    });
    let at = (keep as usize).min(images.len());
    let retire = images.split_off(at);
    (images, retire)
}

/// What retention would do now: the definition's active, visible images (property
/// `factory_definition`, set by every factory build).
pub async fn plan(
    cloud: &Cloud,
    definition: &str,
    keep: u32,
    action: RetentionAction,
) -> Result<Plan, ApiError> {
    let images = cloud
        .list_images(&ImageFilter {
            status: Some("active".into()),
            properties: vec![("factory_definition".into(), definition.to_string())],
            ..ImageFilter::default()
        })
        .await?;
    let (keep, retire) = split(images, keep);
    Ok(Plan {
        definition: definition.to_string(),
        action,
        keep,
        retire,
    })
}

/// Carries the plan out; a failure on one image does not stop the others.
pub async fn apply(
    cloud: &Cloud,
    plan: &Plan,
    mut on_image: impl FnMut(&Image, &Result<(), ApiError>),
) -> usize {
    let mut failures = 0;
    for image in &plan.retire {
        let result = match plan.action {
            RetentionAction::Delete => match cloud.delete_image(&image.id).await {
                Err(e) if e.is_not_found() => Ok(()),
                other => other,
            },
            RetentionAction::Hide => cloud
                .update_image(&image.id, &[ImageChange::Hidden(true)])
                .await
                .map(|_| ()),
        };
        failures += usize::from(result.is_err());
        on_image(image, &result);
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(name: &str, created: &str) -> Image {
        serde_json::from_value(serde_json::json!({
            "id": name, "name": name, "status": "active", "created_at": created
        }))
        .unwrap()
    }

    #[test]
    fn the_newest_are_kept_whatever_the_listing_order() {
        let images = vec![
            image("debian-12-2026-11-01-0900", "2026-11-01T09:00:00Z"),
            image("debian-12-2026-11-20-0900", "2026-11-20T09:00:00Z"),
            image("debian-12-2026-10-01-0900", "2026-10-01T09:00:00Z"),
            image("debian-12-2026-11-25-0900", "2026-11-25T09:00:00Z"),
        ];
        let (keep, retire) = split(images, 2);
        let names = |v: &[Image]| v.iter().map(|i| i.id.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(&keep),
            ["debian-12-2026-11-25-0900", "debian-12-2026-11-20-0900"]
        );
        assert_eq!(
            names(&retire),
            ["debian-12-2026-11-01-0900", "debian-12-2026-10-01-0900"]
        );
        let (keep, retire) = split(vec![image("a", "2026-01-01T00:00:00Z")], 3);
        assert_eq!((keep.len(), retire.len()), (1, 0));
    }
}
