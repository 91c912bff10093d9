import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { cp, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describeRun, runOk } from './captured-command.js';
import { REPO, tsMajor } from './repo-package.js';

/** The app a library user writes (test/packaging-fixture/), copied into each throwaway consumer app. */
const FIXTURE = join(REPO, 'test', 'packaging-fixture');
const FIXTURE_FILES = ['app.module.ts', 'main.ts', 'app.spec.ts'];

const INSTALL_TIMEOUT = 4 * 60_000;
const TSC_TIMEOUT = 2 * 60_000;
const RUN_TIMEOUT = 60_000;

/** The `RESULTS` line of the fixture's main.ts: GET /double/1 to /double/5 through its own worker. */
const DOUBLED = [2, 4, 6, 8, 10];

function atLeastNode(major: number, minor: number): boolean {
  const [nodeMajor, nodeMinor] = process.versions.node.split('.').map(Number);
  return nodeMajor > major || (nodeMajor === major && nodeMinor >= minor);
}

/** A consumer app in one module format, as a user sets it up. */
export interface AppKind {
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

export const APPS: AppKind[] = [
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

export async function createApp(root: string, app: AppKind, overrides: Record<string, unknown> = {}): Promise<string> {
  const dir = join(root, app.dir);
  await mkdir(join(dir, 'src'), { recursive: true });
  for (const file of FIXTURE_FILES) await cp(join(FIXTURE, file), join(dir, 'src', file));
  await writeFile(join(dir, 'package.json'), JSON.stringify({ name: `${app.dir}-app`, private: true, ...app.packageJson }, null, 2));
  const tsconfig = { compilerOptions: { ...COMPILER_OPTIONS, ...app.compilerOptions, ...overrides }, include: ['src'] };
  await writeFile(join(dir, 'tsconfig.json'), JSON.stringify(tsconfig, null, 2));
  return dir;
}

export async function install(root: string, tarball: string, packages: string[]): Promise<void> {
  await mkdir(root, { recursive: true });
  await writeFile(join(root, 'package.json'), JSON.stringify({ name: 'consumer', private: true }));
  const args = ['install', '--no-audit', '--no-fund', '--prefer-offline', tarball, ...packages];
  await runOk(`npm ${args.join(' ')} (in ${root})`, 'npm', args, root, INSTALL_TIMEOUT);
}

/** One copy of Nest in the tree, none nested under the library, a consistent tree, and no ioredis. */
export async function assertTree(root: string): Promise<void> {
  const ls = await runOk('npm ls @nestjs/core --all --parseable', 'npm', ['ls', '@nestjs/core', '--all', '--parseable'], root, 60_000);
  const paths = ls.stdout.split('\n').filter((line) => line.trim() !== '');
  assert.deepEqual(paths, [join(root, 'node_modules', '@nestjs', 'core')], `expected one @nestjs/core, found:\n${ls.stdout}`);
  assert.ok(!existsSync(join(root, 'node_modules', 'nestjs-batches', 'node_modules', '@nestjs')), 'a nested @nestjs under nestjs-batches');
  // Exits non-zero on a missing or unmet (non-optional) peer.
  await runOk('npm ls --all', 'npm', ['ls', '--all'], root, 60_000);
  assert.ok(!existsSync(join(root, 'node_modules', 'ioredis')), 'ioredis got installed: the missing-ioredis check would prove nothing');
}

/** Type-checks, builds and runs the hybrid app, then the app's own spec. */
export async function buildAndRunApp(root: string, dir: string, app: AppKind): Promise<void> {
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
