//! `pages`: the web UI. How long `serve` takes to answer a page with 100 instances (listing
//! their files, reading the topic cache and rendering the template, over loopback HTTP), and
//! how many bytes a first visit loads (the login page and every asset it names).

use super::{ms, process::serve_with_instances};
use crate::Ctx;
use crate::report::Subject;

/// Requests per page.
const REQUESTS: usize = 50;

pub async fn pages(ctx: &mut Ctx) -> anyhow::Result<()> {
    ctx.report.section("pages: the web UI with 100 demo instances");
    let (_serve, _, api) = serve_with_instances(ctx, false, 100).await?;
    for (name, path) in
        [("page_dashboard_100", "/"), ("page_instances_100", "/instances"), ("page_devices_100", "/devices")]
    {
        api.page(path).await?;
        let mut took = Vec::with_capacity(REQUESTS);
        for _ in 0..REQUESTS {
            took.push(ms(api.page(path).await?.1));
        }
        took.sort_by(f64::total_cmp);
        let median = took[took.len() / 2];
        ctx.report
            .figure(name, Subject::Iot2mqtt, "ms", vec![median])
            .target(5.0, "< 5 ms")
            .note(format!("GET {path}, median of {REQUESTS}, request included"));
    }
    let login = api.public_bytes("/login").await?;
    let html = String::from_utf8_lossy(&api.page("/login").await?.0.into_bytes()).into_owned();
    let mut total = login;
    let assets: std::collections::BTreeSet<&str> = html.split('"').filter(|p| p.starts_with("/assets/")).collect();
    for asset in assets {
        total += api.public_bytes(asset).await?;
    }
    ctx.report
        .figure("first_page_load", Subject::Iot2mqtt, "KiB", vec![total as f64 / 1024.0])
        .target(150.0, "< 150 KB")
        .note("the login page and its style sheet, script and icon, uncompressed");
    Ok(())
}
