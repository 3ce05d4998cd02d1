// Debian's Firefox ESR for the browser tests, driven by puppeteer-core over WebDriver BiDi (no
// browser-specific driver to download; playwright-core cannot drive a stock Firefox). Its pages
// are wrapped in the small part of playwright's Page API that the tests use (harness.mjs's
// Chromium pages are playwright's own), so that one test file runs in both engines.
// Downloads: Firefox saves them by its preferences into a folder of this run, where
// `waitForEvent('download')` finds the finished file.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import puppeteer from 'puppeteer-core';

export const FIREFOX = process.env.FIREFOX || '/usr/bin/firefox-esr';

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

// A download that Firefox finished in `dir` after `since` (a set of names already there).
// Firefox makes the file (empty), writes NAME.part and renames it over the file: the download
// is done when no .part is left and the file has the same size, above zero, twice running.
async function nextDownload(dir, since, timeout = 120_000) {
  const t0 = Date.now();
  let last = null;
  while (Date.now() - t0 < timeout) {
    const names = fs.readdirSync(dir);
    const done = names.filter((n) => !since.has(n) && !n.endsWith('.part')).sort();
    if (done.length && !names.some((n) => n.endsWith('.part'))) {
      const file = path.join(dir, done[0]);
      const size = fs.statSync(file).size;
      if (size > 0 && last === `${done[0]}:${size}`) {
        return {
          suggestedFilename: () => done[0],
          saveAs: async (to) => { fs.copyFileSync(file, to); fs.rmSync(file); },
        };
      }
      last = `${done[0]}:${size}`;
    }
    await sleep(100);
  }
  throw new Error(`no download finished in ${timeout / 1000} s`);
}

/** The playwright Page methods the tests call, on a puppeteer page. */
class Page {
  constructor(page, downloads) {
    this.page = page;
    this.downloads = downloads;
  }

  on(event, handler) {
    if (event === 'console') this.page.on('console', handler);
    else if (event === 'pageerror') this.page.on('pageerror', handler);
  }

  goto(url) { return this.page.goto(url); }

  reload() { return this.page.reload(); }

  close() { return this.page.close(); }

  evaluate(fn, arg) { return this.page.evaluate(fn, arg); }

  // Polled from here, one short evaluation at a time: puppeteer's own waitForFunction is one
  // BiDi call that lasts until the condition holds, and any call longer than its protocol
  // timeout (180 s) fails, so a photo that takes minutes to derain could not be waited for.
  async waitForFunction(fn, arg, options = {}) {
    const timeout = options.timeout ?? 30_000;
    const polling = options.polling ?? 100;
    const t0 = Date.now();
    for (;;) {
      let value;
      try {
        value = await this.page.evaluate(fn, arg);
      } catch (error) {
        // A navigation (a reload, the offline worker taking over) ends the page's realm
        // between two polls: poll the new one, as puppeteer's own wait does.
        if (!/context|realm|navigat|destroyed|discarded/i.test(String(error?.message))) throw error;
      }
      if (value) return value;
      if (Date.now() - t0 > timeout) throw new Error(`waitForFunction: not true after ${timeout / 1000} s`);
      await sleep(polling);
    }
  }

  textContent(selector) { return this.page.$eval(selector, (e) => e.textContent); }

  inputValue(selector) { return this.page.$eval(selector, (e) => e.value); }

  isVisible(selector) {
    return this.page.$eval(selector, (e) => e.getClientRects().length > 0 && getComputedStyle(e).visibility !== 'hidden');
  }

  async selectOption(selector, value) { await this.page.select(selector, value); }

  click(selector) { return this.page.click(selector); }

  async setChecked(selector, checked) {
    const now = await this.page.$eval(selector, (e) => e.checked);
    if (now !== checked) await this.page.click(selector);
  }

  check(selector) { return this.setChecked(selector, true); }

  uncheck(selector) { return this.setChecked(selector, false); }

  async setInputFiles(selector, files) {
    const input = await this.page.$(selector);
    await input.uploadFile(...[files].flat());
  }

  setViewportSize({ width, height }) { return this.page.setViewport({ width, height }); }

  screenshot({ path: file, fullPage }) { return this.page.screenshot({ path: file, fullPage }); }

  /** Only 'download' (the next file Firefox saves). */
  waitForEvent(event) {
    if (event !== 'download') throw new Error(`waitForEvent('${event}') is not wrapped for Firefox`);
    return nextDownload(this.downloads, new Set(fs.readdirSync(this.downloads)));
  }
}

/** Firefox ESR, headless, with a profile and a download folder of its own. */
export async function launchFirefox() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'brn-firefox-'));
  const downloads = fs.mkdtempSync(path.join(os.tmpdir(), 'brn-firefox-downloads-'));
  const browser = await puppeteer.launch({
    browser: 'firefox',
    executablePath: FIREFOX,
    headless: true,
    userDataDir: profile,
    extraPrefsFirefox: {
      // Downloads go to our folder, with no dialog, whatever their type.
      'browser.download.folderList': 2,
      'browser.download.dir': downloads,
      'browser.download.useDownloadDir': true,
      'browser.download.always_ask_before_handling_new_types': false,
      'browser.helperApps.neverAsk.saveToDisk': 'image/png,application/zip,application/octet-stream',
      'browser.download.alwaysOpenPanel': false,
      // The closed network: no updates, telemetry or captive-portal checks.
      'app.update.enabled': false,
      'network.captive-portal-service.enabled': false,
      'network.connectivity-service.enabled': false,
      'datareporting.policy.dataSubmissionEnabled': false,
      'toolkit.telemetry.enabled': false,
    },
  });
  const requests = [];
  const context = {
    async newPage() {
      const page = await browser.newPage();
      // Every request the page (and, where Firefox reports them so, its workers) makes.
      page.on('request', (r) => {
        // BiDi gives whether a request has a body, not the body: its length from the header.
        const body = r.hasPostData() ? Number(r.headers()['content-length']) || 1 : 0;
        requests.push({ url: r.url(), method: r.method(), body });
      });
      return new Page(page, downloads);
    },
  };
  const close = async () => {
    await browser.close();
    fs.rmSync(profile, { recursive: true, force: true });
    fs.rmSync(downloads, { recursive: true, force: true });
  };
  return { context, close, requests };
}
