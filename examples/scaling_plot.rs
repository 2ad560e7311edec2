//! Draws the gallery's parallel efficiency at 2 ranks as a bar chart (PNG), from the CSV `examples/gallery.sh`
//! writes (`kernel,np,elapsed_s` per line).
//!
//! ```text
//! bash examples/gallery.sh            # runs the kernels, writes gallery.csv, calls this program
//! target/release/examples/scaling_plot gallery.csv docs/gallery.png
//! ```
//!
//! One bar per kernel, in the order of first appearance in the CSV, height = efficiency
//! `t(1 rank) / (2 · t(2 ranks))` from the medians; grey lines mark 0.2 steps, the red line 0.8 and the black line
//! 1.0. The program prints the table it drew.

use std::collections::BTreeMap;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        return Err("usage: scaling_plot GALLERY.csv OUT.png".into());
    }
    let text = std::fs::read_to_string(&args[1])?;
    let mut order: Vec<String> = Vec::new();
    let mut times: BTreeMap<(String, usize), Vec<f64>> = BTreeMap::new();
    for (k, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 3 {
            return Err(format!("line {}: expected kernel,np,elapsed_s: {line:?}", k + 1).into());
        }
        let (kernel, np, t) = (
            f[0].to_string(),
            f[1].trim().parse::<usize>()?,
            f[2].trim().parse::<f64>()?,
        );
        if !order.contains(&kernel) {
            order.push(kernel.clone());
        }
        times.entry((kernel, np)).or_default().push(t);
    }
    let mut bars = Vec::new();
    println!(
        "{:<20} {:>10} {:>10} {:>10}",
        "kernel", "np=1 s", "np=2 s", "efficiency"
    );
    for kernel in &order {
        let (Some(t1), Some(t2)) = (times.get(&(kernel.clone(), 1)), times.get(&(kernel.clone(), 2))) else {
            continue;
        };
        let (t1, t2) = (median(t1.clone()), median(t2.clone()));
        let eff = t1 / (2.0 * t2);
        println!("{kernel:<20} {t1:>10.3} {t2:>10.3} {eff:>10.2}");
        bars.push(eff);
    }
    let (w, h, top) = (60 * bars.len().max(1) + 40, 300usize, 1.2f64);
    let mut img = vec![255u8; w * h * 3];
    let mut put = |x: usize, y: usize, c: [u8; 3]| {
        if x < w && y < h {
            img[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&c);
        }
    };
    let y_of = |v: f64| h - 1 - ((v / top).clamp(0.0, 1.0) * (h - 20) as f64) as usize;
    for (k, &e) in bars.iter().enumerate() {
        for x in 30 + 60 * k..30 + 60 * k + 40 {
            for y in y_of(e)..h {
                put(x, y, [70, 110, 180]);
            }
        }
    }
    for (v, c) in [
        (0.2, [200, 200, 200]),
        (0.4, [200, 200, 200]),
        (0.6, [200, 200, 200]),
        (0.8, [220, 30, 30]),
        (1.0, [0, 0, 0]),
    ] {
        let y = y_of(v);
        for x in 0..w {
            put(x, y, c);
        }
    }
    let file = std::fs::File::create(&args[2])?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w as u32, h as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header()?.write_image_data(&img)?;
    println!("wrote {}", args[2]);
    Ok(())
}
