import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

// Proves that a user can install the packed package into apps of their own: packs the repo, installs the
// tarball with its peers from the npm registry into throwaway apps outside the repo (ESM, CommonJS under
// `nodenext`, CommonJS under `commonjs`), type-checks them strictly, runs a hybrid app and each app's own
// `node --test` spec, then does the same on the lowest supported versions of the peers.

const REPO = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');
const FIXTURE = join(REPO, 'test', 'packaging-fixture');
const FIXTURE_FILES = ['app.module.ts', 'main.ts', 'app.spec.ts'];

const SUITE_TIMEOUT = 8 * 60_000;
const INSTALL_TIMEOUT = 4 * 60_000;
const TSC_TIMEOUT = 2 * 60_000;
const RUN_TIMEOUT = 60_000;

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

const DOUBLED = [2, 4, 6, 8, 10];

interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  stdout: string;
  output: string;
}

/** The environment of child processes: no test-runner or npm-script state of this process leaks into them. */
function childEnv(): NodeJS.ProcessEnv {
  const keep = new Set(['npm_config_cache', 'npm_config_registry', 'npm_config_userconfig', 'npm_config_globalconfig']);
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key === 'NODE_TEST_CONTEXT' || key === 'INIT_CWD') continue;
    if (key.toLowerCase().startsWith('npm_') && !keep.has(key.toLowerCase())) continue;
    env[key] = value;
  }
  return { ...env, NO_COLOR: '1', NO_UPDATE_NOTIFIER: '1', npm_config_update_notifier: 'false', npm_config_fund: 'false' };
}

/** Runs a command with its output captured (never inherited); kills its whole process group after `timeout` ms. */
function run(command: string, args: string[], cwd: string, timeout: number): Promise<RunResult> {
  return new Promise((resolvePromise) => {
    const child = spawn(command, args, { cwd, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let output = '';
    let timedOut = false;
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      output += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    }, timeout);
    const finish = (code: number | null, signal: NodeJS.Signals | null) => {
      clearTimeout(timer);
      resolvePromise({ code, signal, timedOut, stdout, output });
    };
    child.on('error', (error) => {
      output += `\n${String(error)}`;
      finish(null, null);
    });
    child.on('close', finish);
  });
}

function describeRun(what: string, result: RunResult): string {
  const status = result.timedOut ? 'timed out' : `exited with ${result.code ?? result.signal}`;
  const printed = result.output.length > 12_000 ? `…${result.output.slice(-12_000)}` : result.output;
  return `${what} ${status}; it printed:\n${printed}`;
}

async function runOk(what: string, command: string, args: string[], cwd: string, timeout: number): Promise<RunResult> {
  const result = await run(command, args, cwd, timeout);
  assert.ok(result.code === 0 && !result.timedOut, describeRun(what, result));
  return result;
}

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

function atLeastNode(major: number, minor: number): boolean {
  const [nodeMajor, nodeMinor] = process.versions.node.split('.').map(Number);
  return nodeMajor > major || (nodeMajor === major && nodeMinor >= minor);
}

interface RepoPackage {
  name: string;
  version: string;
  main: string;
  types: string;
  exports: Record<string, string | Record<string, string>>;
  peerDependencies: Record<string, string>;
  devDependencies: Record<string, string>;
}

const pkg = JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8')) as RepoPackage;
const tsMajor = Number(/\d+/.exec(pkg.devDependencies.typescript)![0]);
const skip = await registryUnreachable();

interface AppKind {
  dir: string;
  /** What the emitted code looks like for this module format. */
  importsLibraryAs: RegExp;
  packageJson: Record<string, unknown>;
  compilerOptions: Record<string, unknown>;
  skip?: string;
}

const COMPILER_OPTIONS = {
  strict: true,
  experimentalDecorators: true,
  emitDecoratorMetadata: true,
  skipLibCheck: false,
  target: 'ES2023',
  types: ['node'],
  rootDir: 'src',
  outDir: 'dist',
};

const APPS: AppKind[] = [
  {
    dir: 'esm',
    importsLibraryAs: /from 'nestjs-batches'/,
    packageJson: { type: 'module' },
    compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext' },
  },
  {
    // Nest 12's default CommonJS template: no "type", `module: nodenext`; Nest itself is loaded by require(esm).
    dir: 'cjs-nodenext',
    importsLibraryAs: /require\("nestjs-batches"\)/,
    packageJson: {},
    compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext' },
    skip: atLeastNode(20, 19) ? undefined : 'require(esm) needs Node >= 20.19',
  },
  {
    // Plain `module: commonjs`: types found through `types`/`main` (node10 resolution), run through require(esm).
    // TypeScript 6 deprecates node10 resolution: it stops with TS5107 unless `ignoreDeprecations: "6.0"`.
    dir: 'cjs-commonjs',
    importsLibraryAs: /require\("nestjs-batches"\)/,
    packageJson: {},
    compilerOptions: {
      module: 'commonjs',
      moduleResolution: 'node10',
      esModuleInterop: true,
      ...(tsMajor === 6 ? { ignoreDeprecations: '6.0' } : {}),
    },
    skip: atLeastNode(20, 19) ? undefined : 'require(esm) needs Node >= 20.19',
  },
];

async function createApp(root: string, app: AppKind, overrides: Record<string, unknown> = {}): Promise<string> {
  const dir = join(root, app.dir);
  await mkdir(join(dir, 'src'), { recursive: true });
  for (const file of FIXTURE_FILES) await cp(join(FIXTURE, file), join(dir, 'src', file));
  await writeFile(join(dir, 'package.json'), JSON.stringify({ name: `${app.dir}-app`, private: true, ...app.packageJson }, null, 2));
  const tsconfig = { compilerOptions: { ...COMPILER_OPTIONS, ...app.compilerOptions, ...overrides }, include: ['src'] };
  await writeFile(join(dir, 'tsconfig.json'), JSON.stringify(tsconfig, null, 2));
  return dir;
}

async function install(root: string, tarball: string, packages: string[]): Promise<void> {
  await mkdir(root, { recursive: true });
  await writeFile(join(root, 'package.json'), JSON.stringify({ name: 'consumer', private: true }));
  const args = ['install', '--no-audit', '--no-fund', '--prefer-offline', tarball, ...packages];
  await runOk(`npm ${args.join(' ')} (in ${root})`, 'npm', args, root, INSTALL_TIMEOUT);
}

/** One copy of Nest in the tree, none nested under the library, a consistent tree, and no ioredis. */
async function assertTree(root: string): Promise<void> {
  const ls = await runOk('npm ls @nestjs/core --all --parseable', 'npm', ['ls', '@nestjs/core', '--all', '--parseable'], root, 60_000);
  const paths = ls.stdout.split('\n').filter((line) => line.trim() !== '');
  assert.deepEqual(paths, [join(root, 'node_modules', '@nestjs', 'core')], `expected one @nestjs/core, found:\n${ls.stdout}`);
  assert.ok(!existsSync(join(root, 'node_modules', 'nestjs-batches', 'node_modules', '@nestjs')), 'a nested @nestjs under nestjs-batches');
  // Exits non-zero on a missing or unmet (non-optional) peer.
  await runOk('npm ls --all', 'npm', ['ls', '--all'], root, 60_000);
  assert.ok(!existsSync(join(root, 'node_modules', 'ioredis')), 'ioredis got installed: the missing-ioredis check would prove nothing');
}

/** Type-checks, builds and runs the hybrid app, then the app's own spec. */
async function buildAndRunApp(root: string, dir: string, app: AppKind): Promise<void> {
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  await runOk(`[${app.dir}] tsc --noEmit`, process.execPath, [tsc, '--noEmit', '-p', '.'], dir, TSC_TIMEOUT);
  await runOk(`[${app.dir}] tsc`, process.execPath, [tsc, '-p', '.'], dir, TSC_TIMEOUT);
  const emitted = await readFile(join(dir, 'dist', 'app.module.js'), 'utf8');
  assert.match(emitted, app.importsLibraryAs, `[${app.dir}] emitted app.module.js is not in the expected module format`);

  const main = await runOk(`[${app.dir}] node dist/main.js`, process.execPath, ['dist/main.js'], dir, RUN_TIMEOUT);
  const line = main.stdout.split('\n').find((candidate) => candidate.startsWith('RESULTS '));
  assert.ok(line, describeRun(`[${app.dir}] node dist/main.js printed no RESULTS line:`, main));
  assert.deepEqual(JSON.parse(line.slice('RESULTS '.length)), DOUBLED, describeRun(`[${app.dir}] node dist/main.js`, main));

  const spec = await runOk(
    `[${app.dir}] node --test dist/app.spec.js`,
    process.execPath,
    ['--test', '--test-reporter=tap', 'dist/app.spec.js'],
    dir,
    RUN_TIMEOUT,
  );
  assert.match(spec.stdout, /^# pass 3$/m, describeRun(`[${app.dir}] node --test dist/app.spec.js`, spec));
  assert.match(spec.stdout, /^# fail 0$/m, describeRun(`[${app.dir}] node --test dist/app.spec.js`, spec));
}

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
