// The bare-browser anchor of pgshot's rendering benchmark: puppeteer-core driving the system
// Chromium (never a downloaded browser), one page at a time, in one of three ways.
//
//   node render.js MODE WIDTH HEIGHT REPEAT OUTDIR URL...
//
// MODE  warm:  one tab reused for every page (no isolation: the ceiling)
//       ahead: a fresh incognito context and page per shot, opened before the clock starts
//              (the isolation pgshot promises, with its contexts opened ahead as pgshot does)
//       clock: the context and page created and closed on the clock (what most services do)
// Each shot navigates (waitUntil domcontentloaded), captures a PNG of the viewport and reads the
// body's HTML (what a markdown output needs from the browser). Prints one JSON line per shot:
// {"url", "ms", "cycle", "error", "png"} with the PNG written to OUTDIR (`cycle`: the shot plus,
// for `ahead`, closing its context and opening the next).
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const puppeteer = require('puppeteer-core');

const [mode, width, height, repeat, outdir, ...urls] = process.argv.slice(2);
if (!['warm', 'ahead', 'clock'].includes(mode) || !urls.length) {
  console.error('usage: node render.js warm|ahead|clock WIDTH HEIGHT REPEAT OUTDIR URL...');
  process.exit(2);
}
const viewport = { width: Number(width), height: Number(height) };
const TIMEOUT = 30000;

async function main() {
  const args = [
    '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--no-first-run', '--disable-quic', '--disable-domain-reliability', '--no-default-browser-check',
  ];
  if (process.getuid && process.getuid() === 0) args.push('--no-sandbox');
  const browser = await puppeteer.launch({
    executablePath: process.env.PGSHOT_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args,
    defaultViewport: viewport,
  });
  const warm = mode === 'warm' ? await browser.newPage() : null;
  const open = async () => {
    const context = await browser.createBrowserContext();
    const page = await context.newPage();
    await page.setViewport(viewport);
    return { context, page };
  };
  let next = mode === 'ahead' ? await open() : null;
  let i = 0;
  for (let r = 0; r < Number(repeat); r++) {
    for (const url of urls) {
      const file = path.join(outdir, `${mode}-${i++}.png`);
      let error = null;
      let ms = 0;
      let tab = null;
      const t0 = performance.now();
      try {
        if (mode === 'clock') tab = await open();
        if (mode === 'ahead') tab = next;
        const page = warm || tab.page;
        await page.goto(url, { waitUntil: 'domcontentloaded', timeout: TIMEOUT });
        const png = await page.screenshot({ type: 'png' });
        // The body's HTML crosses the connection, as pgshot's markdown output needs it to.
        await page.evaluate(() => (document.body ? document.body.outerHTML : ''));
        if (mode === 'clock') await tab.context.close();
        ms = performance.now() - t0;
        fs.writeFileSync(file, png);
      } catch (e) {
        error = String(e && e.message ? e.message : e).slice(0, 300);
      }
      // The whole cycle of one shot: for `ahead`, the shot and the closing of its context and the
      // opening of the next, which the shot's own time leaves out.
      let cycle = ms;
      if (mode === 'ahead') {
        await tab.context.close().catch(() => {});
        next = await open();
        cycle = performance.now() - t0;
      }
      process.stdout.write(JSON.stringify({ url, ms, cycle, error, png: error ? null : file }) + '\n');
    }
  }
  await browser.close();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
