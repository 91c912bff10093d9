import { createRequire } from 'node:module';
import { BatchesConfigError } from './options/option-checks.js';

const requirePeer = createRequire(import.meta.url);

/**
 * Loads an optional peer dependency when an option needs it. Synchronous (CommonJS peers, and ESM
 * ones through Node's require(esm)), so constructors stay synchronous; a missing package becomes
 * one error naming the option and the install line.
 */
export function optionalPeer<T>(packageName: string, neededFor: string): T {
  try {
    return requirePeer(packageName) as T;
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code !== 'MODULE_NOT_FOUND' && code !== 'ERR_MODULE_NOT_FOUND') throw error;
    throw new BatchesConfigError(
      `${neededFor} needs the optional peer dependency '${packageName}', which is not installed. Run \`npm install ${packageName}\`.`,
    );
  }
}
