import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository's root: compiled, this file sits in dist/test/support/. */
export const REPO = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');

export interface RepoPackage {
  name: string;
  version: string;
  main: string;
  types: string;
  exports: Record<string, string | Record<string, string>>;
  peerDependencies: Record<string, string>;
  devDependencies: Record<string, string>;
}

/** The repository's package.json, as it will be packed. */
export const pkg = JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8')) as RepoPackage;
/** The TypeScript major the repository builds with; the consumer apps install the same. */
export const tsMajor = Number(/\d+/.exec(pkg.devDependencies.typescript)![0]);
