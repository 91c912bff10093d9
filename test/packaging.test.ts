import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { run, runOk } from './support/captured-command.js';
import { APPS, assertTree, buildAndRunApp, createApp, install } from './support/consumer-app.js';
import { pkg, REPO, tsMajor } from './support/repo-package.js';

// Proves that a user can install the packed package into apps of their own: packs the repo, installs the
// tarball with its peers from the npm registry into throwaway apps outside the repo (ESM, CommonJS under
// `nodenext`, CommonJS under `commonjs`), type-checks them strictly, runs a hybrid app and each app's own
// `node --test` spec, then does the same on the lowest supported versions of the peers.

const SUITE_TIMEOUT = 8 * 60_000;

/**
 * The lowest versions verified to install (without `--legacy-peer-deps`) and to work with the library.
 * `@nestjs/core@12.0.0`, `@nestjs/platform-express@12.0.0` and `@nestjs/testing@12.0.0` were published
 * with peer ranges of Nest 11 (`@nestjs/common ^11.0.0`), so npm refuses them next to any Nest 12
 * `@nestjs/common` (ERESOLVE); 12.0.1 is the first of each that installs. The library imports operators
 * (`bufferTime`, `filter`, `mergeMap`, `map`) from `rxjs`, which exports them only since 7.2.0 (7.1.0 fails
 * at load: "Named export 'bufferTime' not found").
 */
const LOWEST: Record<string, string> = {
  '@nestjs/common': '12.0.0',
  '@nestjs/core': '12.0.1',
  '@nestjs/microservices': '12.0.1',
  '@nestjs/platform-express': '12.0.1',
  '@nestjs/testing': '12.0.1',
  '@nestjs/config': '12.0.0',
  rxjs: '7.2.0',
  'reflect-metadata': '0.1.12',
};

/** Skips the suite when the npm registry does not answer within 30 s. */
async function registryUnreachable(): Promise<string | undefined> {
  const result = await run('npm', ['view', '@nestjs/core', 'version'], REPO, 30_000);
  if (result.code === 0 && /^\d+\.\d+\.\d+/.test(result.stdout.trim())) return undefined;
  return `the npm registry cannot be reached (\`npm view @nestjs/core version\` ${result.timedOut ? 'took over 30 s' : 'failed'})`;
}

function compareVersions(a: string, b: string): number {
  const [x, y] = [a, b].map((version) => version.split('.').map(Number));
  return x[0] - y[0] || x[1] - y[1] || x[2] - y[2];
}

/** The lowest version a range like `^0.1.12 || ^0.2.0` allows. */
function rangeFloor(range: string): string {
  return [...range.matchAll(/\d+\.\d+\.\d+/g)].map((match) => match[0]).toSorted(compareVersions)[0];
}

const skip = await registryUnreachable();

describe('the packed package in consumer apps', { skip: skip ?? false, timeout: SUITE_TIMEOUT }, () => {
  let work: string;
  let tarball: string;
  let latest: Promise<void>;
  let lowest: Promise<void>;
  const latestRoot = () => join(work, 'latest');
  const lowestRoot = () => join(work, 'lowest');

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'nestjs-batches-packaging-'));
    const packDir = join(work, 'pack');
    await mkdir(packDir);
    // Runs `prepare`, which builds the library.
    await runOk('npm pack', 'npm', ['pack', '--pack-destination', packDir], REPO, 3 * 60_000);
    const tarballs = (await readdir(packDir)).filter((file) => file.endsWith('.tgz'));
    assert.deepEqual(tarballs, [`${pkg.name}-${pkg.version}.tgz`]);
    tarball = join(packDir, tarballs[0]);
    // Both installs share the npm cache and run side by side; each test awaits its own.
    latest = install(latestRoot(), tarball, [
      '@nestjs/common',
      '@nestjs/core',
      '@nestjs/microservices',
      '@nestjs/platform-express',
      '@nestjs/config',
      '@nestjs/testing',
      'rxjs',
      'reflect-metadata',
      `typescript@${tsMajor}`,
      '@types/node@20',
    ]);
    lowest = install(lowestRoot(), tarball, [
      ...Object.entries(LOWEST).map(([name, version]) => `${name}@${version}`),
      `typescript@${tsMajor}`,
      '@types/node@20',
    ]);
    // Failures are reported by the tests that await them.
    latest.catch(() => undefined);
    lowest.catch(() => undefined);
  });

  after(async () => {
    await Promise.allSettled([latest, lowest]);
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('packs only package.json, README.md, LICENSE and the compiled library', async () => {
    const listing = await runOk('tar -tzf', 'tar', ['-tzf', tarball], work, 30_000);
    const files = listing.stdout.split('\n').filter((line) => line !== '' && !line.endsWith('/'));
    const allowed =
      /^package\/(package\.json|README\.md|LICENSE|dist\/libs\/batches\/src\/.+(?<!\.d)\.js|dist\/libs\/batches\/src\/.+\.d\.ts)$/;
    const unexpected = files.filter((file) => !allowed.test(file));
    assert.deepEqual(unexpected, [], `unexpected files in the tarball:\n${files.join('\n')}`);
    for (const required of ['package.json', 'README.md', 'LICENSE', 'dist/libs/batches/src/index.js', 'dist/libs/batches/src/index.d.ts']) {
      assert.ok(files.includes(`package/${required}`), `package/${required} missing from the tarball:\n${files.join('\n')}`);
    }
    // The entry points of package.json are in it.
    const entries = [
      pkg.main,
      pkg.types,
      ...Object.values(pkg.exports).flatMap((entry) => (typeof entry === 'string' ? [entry] : Object.values(entry))),
    ];
    for (const entry of entries) {
      const path = `package/${entry.replace(/^\.\//, '')}`;
      assert.ok(files.includes(path), `${entry} (package.json entry point) missing from the tarball`);
    }
    // Every compiled file has its declarations and a source: nothing stale from an old build in dist/ is shipped.
    const compiled = files.filter((file) => file.startsWith('package/dist/'));
    for (const file of compiled) {
      const stem = file.slice('package/dist/'.length).replace(/(\.d\.ts|\.js)$/, '');
      assert.ok(
        files.includes(`package/dist/${stem}.js`) && files.includes(`package/dist/${stem}.d.ts`),
        `${file} comes without its .js/.d.ts twin`,
      );
      assert.ok(
        existsSync(join(REPO, `${stem}.ts`)),
        `${file} has no source ${stem}.ts: a stale build output (rm -rf dist and pack again)`,
      );
    }
  });

  describe('with the latest Nest 12', () => {
    before(async () => latest);

    it('installs one @nestjs/core, none nested under the library, and a consistent tree', async () => {
      await assertTree(latestRoot());
    });

    for (const app of APPS) {
      it(
        `${app.dir}: type-checks strictly, builds, serves GET /double/:n from its own worker, and passes its own spec`,
        { skip: app.skip ?? false, timeout: 4 * 60_000 },
        async () => {
          const dir = await createApp(latestRoot(), app);
          await buildAndRunApp(latestRoot(), dir, app);
        },
      );
    }
  });

  describe(`with the lowest supported versions (${Object.entries(LOWEST)
    .map(([name, version]) => `${name}@${version}`)
    .join(', ')})`, () => {
    before(async () => lowest);

    it('installs one @nestjs/core, none nested under the library, and a consistent tree', async () => {
      await assertTree(lowestRoot());
      const ls = await runOk('npm ls --depth=0 --json', 'npm', ['ls', '--depth=0', '--json'], lowestRoot(), 60_000);
      const installed = (JSON.parse(ls.stdout) as { dependencies: Record<string, { version: string }> }).dependencies;
      for (const [name, version] of Object.entries(LOWEST)) assert.equal(installed[name]?.version, version, name);
    });

    it(
      'esm: type-checks, builds, serves GET /double/:n from its own worker, and passes its own spec',
      { timeout: 4 * 60_000 },
      async () => {
        const esm = APPS[0];
        // rxjs before 7.5.5 has no "types" in its exports map, so under nodenext resolution Nest's own .d.ts
        // files (and ours) cannot find rxjs's types (TS7016): a consumer on such an rxjs needs skipLibCheck.
        const dir = await createApp(lowestRoot(), esm, { skipLibCheck: compareVersions(LOWEST.rxjs, '7.5.5') < 0 });
        await buildAndRunApp(lowestRoot(), dir, esm);
      },
    );
  });

  it('the peer ranges start at the lowest versions that work', () => {
    const wrong = Object.entries(pkg.peerDependencies)
      .filter(([name]) => name in LOWEST)
      .filter(([name, range]) => rangeFloor(range) !== LOWEST[name])
      .map(([name, range]) => `${name}: peer range ${range} starts at ${rangeFloor(range)}, the lowest that works is ${LOWEST[name]}`);
    assert.deepEqual(wrong, [], 'change the peer ranges (or, after a library fix, LOWEST in this test)');
  });
});
