// The web player end to end, in Debian's Chromium driven by playwright-core: Tonearm runs
// (`tonearm up`, on a random port, in a fresh data directory) serving the built player;
// a listener signs up, uploads two tracks, waits until they are ready, plays one and hears
// it advance over several segments, likes it, finds it by search, puts both in a playlist
// and reorders them, and sees the play counted on the listening page. Then people: the
// listener finds a second listener (made through the API) and follows them, hears live of
// the playlist they make (the bell, no reload) and sees what they play in friend activity.
// Each page's screenshot is saved under web/test-results/.
//
//   TONEARM_BIN=target/debug/tonearm node --test web/tests/

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const axeSource = createRequire(import.meta.url).resolve('axe-core/axe.min.js');

const web = resolve(import.meta.dirname, '..');
const results = join(web, 'test-results');
const bin = process.env.TONEARM_BIN ?? resolve(web, '..', 'target', 'debug', 'tonearm');
const browserPath = process.env.CHROMIUM ?? '/usr/bin/chromium';

let server;
let base;
let browser;
let dataDir;

function freePort() {
  return new Promise((done, fail) => {
    const probe = createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => done(port));
    });
    probe.on('error', fail);
  });
}

async function waitUntilUp(url, server) {
  for (let i = 0; i < 600; i++) {
    if (server.exitCode !== null) throw new Error(`tonearm exited with ${server.exitCode}`);
    try {
      if ((await fetch(`${url}/healthz`)).ok) return;
    } catch {
      // Not listening yet.
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('tonearm did not start within 60 s');
}

before(async () => {
  mkdirSync(results, { recursive: true });
  dataDir = mkdtempSync(join(tmpdir(), 'tonearm-web-'));
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  server = spawn(bin, ['--data-dir', dataDir, 'up', '--port', String(port)], {
    env: {
      ...process.env,
      TONEARM_GATEWAY__WEB_DIR: join(web, 'dist'),
      // Voice search hears the microphone with the fetched models.
      TONEARM_AI__MODELS_DIR:
        process.env.TONEARM_TEST_MODELS_DIR ?? join(homedir(), '.cache', 'tonearm', 'models'),
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  await waitUntilUp(base, server);
  browser = await chromium.launch({
    executablePath: browserPath,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--autoplay-policy=no-user-gesture-required',
      // The microphone is a recording of a spoken request.
      '--use-fake-ui-for-media-stream',
      '--use-fake-device-for-media-stream',
      `--use-file-for-fake-audio-capture=${spoken(dataDir, 'play evening tide')}`,
    ],
    // playwright gives every launch a fresh --user-data-dir of its own.
  });
});

after(async () => {
  await browser?.close();
  server?.kill('SIGTERM');
  await new Promise((r) => (server?.exitCode !== null ? r() : server.once('exit', r)));
  rmSync(dataDir, { recursive: true, force: true });
});

/** A 20 s tone with tags, made by ffmpeg. */
function song(dir, title, frequency) {
  const file = join(dir, `${title}.flac`);
  execFileSync('ffmpeg', [
    '-loglevel', 'error', '-y',
    '-f', 'lavfi', '-i', `sine=frequency=${frequency}:duration=20`,
    '-metadata', `title=${title}`,
    '-metadata', 'artist=The Harbour Lights',
    '-metadata', 'album=Coastal Songs',
    file,
  ]);
  return file;
}

/** `text` said by espeak-ng, then silence, as the fake microphone plays it (in a loop). */
function spoken(dir, text) {
  const said = join(dir, 'said.wav');
  const file = join(dir, 'microphone.wav');
  execFileSync('espeak-ng', ['-s', '150', '-w', said, text]);
  execFileSync('ffmpeg', ['-loglevel', 'error', '-y', '-i', said, '-af', 'apad=whole_dur=8', '-ar', '48000', file]);
  return file;
}

/** The accessibility rules a page breaks seriously (axe-core), as readable lines. */
async function accessibilityProblems(page) {
  // Evaluated through the debugging protocol: the page's own policy allows no added script.
  if (!(await page.evaluate(() => 'axe' in window))) await page.evaluate(readFileSync(axeSource, 'utf8'));
  const { violations } = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  return violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join(', ')})`);
}

/** An API call as another listener makes it; the parsed answer (null for 204). */
async function api(method, path, token, body) {
  const headers = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(`${base}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  assert.ok(response.ok, `${method} ${path}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** The row that plays `title` in the track list on the page. */
const row = (page, title) => page.locator('.tracks .row', { hasText: title });

/** The titles of the rows of the track list on the page, in order. */
const titles = (page) => page.locator('.tracks .title strong').allTextContents();

test('a listener signs up, uploads, plays, likes, makes a playlist and sees the play counted', async () => {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const segments = new Set();
  page.on('response', (response) => {
    if (/\/media\/.+\.m4s/.test(response.url()) && response.ok()) segments.add(response.url());
  });
  const failures = [];
  page.on('pageerror', (error) => failures.push(error.message));
  // Each page is photographed and checked for serious accessibility faults.
  const inaccessible = [];
  const snap = async (name) => {
    await page.screenshot({ path: join(results, `${name}.png`) });
    inaccessible.push(...(await accessibilityProblems(page)).map((p) => `${name}: ${p}`));
  };

  const started = Date.now();
  await page.goto(base);
  await page.getByRole('button', { name: 'Create an account' }).waitFor();
  const firstLoad = Date.now() - started;
  await snap('sign-in');

  // Sign up.
  await page.getByRole('button', { name: 'Create an account' }).click();
  await page.getByLabel('Name').fill('Ada');
  await page.getByLabel('Email').fill(`ada-${Date.now()}@example.com`);
  await page.getByLabel('Password').fill('correct horse battery');
  await page.getByRole('button', { name: 'Sign up' }).click();
  await page.getByRole('heading', { name: /Good (morning|afternoon|evening), Ada/ }).waitFor();

  // Upload, and wait until it is ready.
  await page.getByRole('navigation').getByRole('link', { name: 'Upload' }).click();
  await page
    .locator('input[type=file]')
    .setInputFiles([song(dataDir, 'Evening Tide', 330), song(dataDir, 'Morning Swell', 440)]);
  await page.locator('.status.ready').nth(1).waitFor({ timeout: 120_000 });
  await snap('upload');

  // Home lists it; play it.
  await page.getByRole('navigation').getByRole('link', { name: 'Home' }).click();
  await row(page, 'Evening Tide').click();
  await page.waitForFunction(() => {
    const audio = document.querySelector('audio');
    return audio !== null && audio.currentTime > 2;
  }, null, { timeout: 30_000 });
  assert.ok(segments.size >= 2, `segments loaded: ${[...segments].length}`);
  await page.getByRole('button', { name: 'Pause' }).waitFor();
  await snap('home-playing');
  await page.getByRole('button', { name: 'Queue' }).click();
  await page.getByRole('complementary', { name: 'Queue' }).getByText('Morning Swell').waitFor();
  await snap('queue');
  await page.getByRole('button', { name: 'Queue' }).click();

  // Like it, find it among liked songs and by search.
  await page.getByRole('button', { name: 'Like Evening Tide' }).first().click();
  await page.getByRole('navigation').getByRole('link', { name: 'Liked songs' }).click();
  await row(page, 'Evening Tide').waitFor();
  await snap('liked');
  await page.getByRole('navigation').getByRole('link', { name: 'Search' }).click();
  await page.getByRole('searchbox', { name: 'Search' }).fill('harbour');
  await row(page, 'Evening Tide').waitFor();
  await snap('search');

  // Voice search: hold the microphone, say "play evening tide", and it plays.
  await page.getByRole('button', { name: 'Pause' }).click();
  const mic = page.getByRole('button', { name: 'Hold to search by voice' });
  await mic.hover();
  await page.mouse.down();
  await page.waitForTimeout(4_000);
  await page.mouse.up();
  const heard = page.locator('.heard');
  await heard.waitFor({ timeout: 60_000 });
  assert.match((await heard.textContent()) ?? '', /evening tide/i);
  await page.getByRole('button', { name: 'Pause' }).waitFor();
  await row(page, 'Evening Tide').waitFor();
  await snap('voice-search');

  // The next track (or the end of the queue) ends the first play, which is reported.
  await page.getByRole('button', { name: 'Next' }).click();

  // A playlist with both songs, reordered.
  await page.getByRole('button', { name: 'New playlist' }).click();
  await page.getByRole('heading', { name: 'My playlist #1' }).waitFor();
  await page.getByRole('navigation').getByRole('link', { name: 'Home' }).click();
  for (const title of ['Evening Tide', 'Morning Swell']) {
    const row = page.locator('.tracks li', { hasText: title });
    await row.getByLabel(`More for ${title}`).click();
    await row.getByRole('menuitem', { name: 'My playlist #1' }).click();
    await row.getByRole('status').filter({ hasText: 'Added to My playlist #1' }).waitFor();
  }
  await page.getByRole('navigation').getByRole('link', { name: 'My playlist #1' }).click();
  await page.getByText('2 songs').waitFor();
  assert.deepEqual(await titles(page), ['Evening Tide', 'Morning Swell']);
  const first = page.locator('.tracks li').first();
  await first.getByLabel('More for Evening Tide').click();
  // Each move is shown at once; the reload waits until the server took it.
  const reordered = () =>
    page.waitForResponse((r) => /\/v1\/playlists\/[^/]+\/tracks$/.test(r.url()) && r.request().method() === 'PUT');
  await Promise.all([reordered(), first.getByRole('menuitem', { name: 'Move down' }).click()]);
  await page.waitForFunction(
    () => document.querySelector('.tracks .title strong')?.textContent === 'Morning Swell',
  );
  await page.reload();
  await page.getByText('2 songs').waitFor();
  assert.deepEqual(await titles(page), ['Morning Swell', 'Evening Tide'], 'the order was kept');
  // And back, by dragging the second row onto the first.
  await Promise.all([reordered(), page.locator('.tracks li').nth(1).dragTo(page.locator('.tracks li').nth(0))]);
  await page.waitForFunction(
    () => document.querySelector('.tracks .title strong')?.textContent === 'Evening Tide',
  );
  await page.reload();
  await page.getByText('2 songs').waitFor();
  assert.deepEqual(await titles(page), ['Evening Tide', 'Morning Swell'], 'the drag was kept');
  // The page was reloaded: what is liked is learned from the server again.
  await page.getByRole('navigation').getByRole('link', { name: 'Liked songs' }).click();
  await page.waitForFunction(
    () =>
      document.querySelector('button[aria-label="Like Evening Tide"]')?.getAttribute('aria-pressed') ===
      'true',
  );
  await snap('playlist');

  // The play shows among the day's top tracks (counted as the event arrives).
  for (let attempt = 0; ; attempt++) {
    await page.getByRole('navigation').getByRole('link', { name: 'Listening' }).click();
    try {
      await page.locator('.top li', { hasText: 'Evening Tide' }).waitFor({ timeout: 2_000 });
      break;
    } catch (error) {
      assert.ok(attempt < 15, `the play reached the listening page: ${error}`);
      await page.getByRole('navigation').getByRole('link', { name: 'Home' }).click();
    }
  }
  await snap('listening');

  // People. Bea signs up elsewhere; Ada finds her and follows her.
  const bea = await api('POST', '/v1/auth/register', undefined, {
    email: `bea-${Date.now()}@example.com`,
    password: 'correct horse battery',
    display_name: 'Beatrix Lund',
  });
  const beaToken = bea.access_token;
  await page.getByRole('navigation').getByRole('link', { name: 'People' }).click();
  await page.getByRole('heading', { name: 'People', exact: true }).waitFor();
  await page.getByRole('searchbox', { name: 'Find people' }).fill('beat');
  const people = page.getByRole('region', { name: 'People found' });
  await people.getByRole('link', { name: 'Beatrix Lund' }).waitFor();
  await people.getByRole('button', { name: 'Follow Beatrix Lund' }).click();
  const following = people.getByRole('button', { name: 'Following Beatrix Lund' });
  await following.waitFor();
  assert.equal(await following.getAttribute('aria-pressed'), 'true');
  await snap('people');

  // Bea makes a public playlist: Ada's bell says so at once, without a reload.
  const friends = page.getByRole('complementary', { name: 'Friend activity' });
  await friends.getByText('When people you follow play something').waitFor();
  await page.evaluate(() => (window.sameDocument = true));
  const bell = page.getByRole('button', { name: /^Notifications/ });
  assert.equal(await bell.getAttribute('aria-label'), 'Notifications');
  const sunday = await api('POST', '/v1/playlists', beaToken, { name: 'Sunday Drive', public: true });
  await page.locator('.bell .count').filter({ hasText: /^1$/ }).waitFor({ timeout: 15_000 });
  assert.equal(await bell.getAttribute('aria-label'), 'Notifications, 1 unread');
  assert.equal(await page.getByRole('status').filter({ hasText: '1 unread notification' }).count(), 1);
  assert.equal(await page.evaluate(() => window.sameDocument), true, 'no reload');
  await bell.click();
  const panel = page.getByRole('region', { name: 'Notifications' });
  const note = panel.getByRole('link', { name: /Beatrix Lund made a new playlist Sunday Drive/ });
  await note.waitFor();
  assert.match((await note.textContent()) ?? '', /just now|second|minute/);
  await snap('notifications');

  // Bea plays one of Ada's songs: Ada's friend activity shows it, live.
  const catalog = await api('GET', '/v1/search?q=evening%20tide&limit=5', beaToken);
  const tide = catalog.tracks.items.find((t) => t.title === 'Evening Tide');
  assert.ok(tide, 'Bea finds Evening Tide');
  await api('PUT', '/v1/me/now-playing', beaToken, { track_id: tide.id, position_ms: 4_000 });
  const beaPlaying = friends.getByRole('listitem').filter({ hasText: 'Beatrix Lund' });
  await beaPlaying.getByRole('button', { name: /Play Evening Tide/ }).waitFor({ timeout: 15_000 });
  await beaPlaying.getByText('Playing now').waitFor();
  await page.keyboard.press('Escape');
  await panel.waitFor({ state: 'detached' });
  await snap('friends');

  // The notification opens Bea's playlist (hers: Ada may save it, not rename it) and is read.
  await bell.click();
  await note.click();
  await page.getByRole('heading', { name: 'Sunday Drive' }).waitFor();
  await page.getByRole('button', { name: 'Save Sunday Drive' }).waitFor();
  assert.equal(await page.getByRole('button', { name: 'Rename' }).count(), 0);
  await page.locator('.bell .count').waitFor({ state: 'detached' });
  assert.equal(page.url().split('#')[1], `/playlist/${sunday.id}`);
  await snap('friend-playlist');

  // A click on what Bea plays plays it for Ada too; her name opens her profile.
  await beaPlaying.getByRole('button', { name: /Play Evening Tide/ }).click();
  await page.getByRole('button', { name: 'Pause' }).waitFor();
  assert.equal(await page.locator('.player .now strong').textContent(), 'Evening Tide');
  await beaPlaying.getByRole('link', { name: 'Beatrix Lund' }).click();
  await page.getByRole('heading', { name: 'Beatrix Lund' }).waitFor();
  await page.getByText('1 follower', { exact: true }).waitFor();
  await page.getByRole('main').getByRole('button', { name: 'Following Beatrix Lund' }).waitFor();
  await page.getByRole('main').getByRole('heading', { name: 'Listening now' }).waitFor();
  await snap('person');

  // The account: the free tier, how to get premium, and whether followers see the music.
  await page.getByRole('button', { name: /Ada.*account/ }).click();
  const account = page.getByRole('region', { name: 'Account' });
  await account.getByText('free tier — 100 requests/min').waitFor();
  await account.getByText('tonearm billing simulate').waitFor();
  const visible = account.getByRole('switch', { name: "Show what I'm playing to followers" });
  await page.waitForFunction(() => !document.querySelector('[role=switch]')?.disabled);
  assert.equal(await visible.isChecked(), true);
  await snap('account');
  const presence = () =>
    page.waitForResponse((r) => r.url().endsWith('/v1/me/presence') && r.request().method() === 'PUT');
  const [hidden] = await Promise.all([presence(), visible.click()]);
  assert.deepEqual(await hidden.json(), { visible: false });
  assert.equal(await visible.isChecked(), false);
  const [shown] = await Promise.all([presence(), visible.click()]);
  assert.deepEqual(await shown.json(), { visible: true });
  await page.keyboard.press('Escape');

  // Bea stops: her entry leaves Ada's friend activity.
  await api('DELETE', '/v1/me/now-playing', beaToken);
  await friends.getByText('When people you follow play something').waitFor({ timeout: 15_000 });

  // On a phone's width the layout folds: navigation on top, no sidebar playlists.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.getByRole('navigation').getByRole('link', { name: 'Home' }).click();
  await page.getByRole('heading', { name: /Good (morning|afternoon|evening), Ada/ }).waitFor();
  await snap('home-phone');

  assert.deepEqual(failures, []);
  assert.deepEqual([...new Set(inaccessible)], []);
  // Reported, not asserted: timings belong to benchmarks.
  console.log(`first load to an interactive sign-in: ${firstLoad} ms`);
});
