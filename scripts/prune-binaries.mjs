// Install step: removes the native binaries of other operating systems / CPUs from onnxruntime-node
// and tokenizers. Both publish one package holding every platform's build (onnxruntime-node
// 1.30: ~300 MB of which linux-x64 is 46 MB; tokenizers 0.23: 13 .node files, 67 MB), and
// neither offers per-platform packages that npm could pick. Without this a core install of itd is
// 384 MB; with it 76 MB on linux-x64 (BENCHMARKS.md "Package (issue 11)").
//
// It deletes only files the package's own loader can never load on this machine:
// onnxruntime-node's binding.js requires bin/napi-v6/<process.platform>/<process.arch>/, and
// tokenizers' index.js tries tokenizers.<platform>-<arch>[-<abi>].node (darwin also -universal).
// It keeps every ABI variant of this platform/arch (glibc and musl, msvc and gnu), and it changes
// nothing (printing why) when:
//   - ITD_KEEP_ALL_PLATFORMS is set to anything but '' or '0' (node_modules shared between
//     machines, e.g. a volume mounted into containers of another OS or CPU);
//   - npm installs for another platform (`npm i --os=... --cpu=... --libc=...`: npm_config_os /
//     npm_config_cpu differ from this machine);
//   - the package cannot be resolved from itd's location, lies outside a node_modules directory
//     (npm link / a workspace checkout), or lacks the binary this machine loads (an unknown layout
//     or an unsupported platform): then nothing of it is touched.
// It never fails the install: every error is reported on stderr and the script exits 0.
// Plain JS so that it runs from package.json "install" with nothing but node.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The directory holding `name`'s package.json, resolved as itd's own code resolves it (hoisted or nested). */
function packageDir(require, name) {
  let dir = path.dirname(require.resolve(name));
  for (;;) {
    const pj = path.join(dir, 'package.json');
    if (fs.existsSync(pj) && JSON.parse(fs.readFileSync(pj, 'utf8')).name === name) return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`no package.json of ${name} above ${require.resolve(name)}`);
    dir = up;
  }
}

/** onnxruntime-node: bin/napi-v6/<platform>/<arch>/ — every directory but this machine's. */
function onnxruntimeTargets(dir, platform, arch) {
  const base = path.join(dir, 'bin', 'napi-v6');
  if (!fs.existsSync(path.join(base, platform, arch, 'onnxruntime_binding.node'))) return { missing: `bin/napi-v6/${platform}/${arch}/onnxruntime_binding.node` };
  const remove = [];
  for (const os of fs.readdirSync(base)) {
    if (os !== platform) remove.push(path.join(base, os));
    else for (const cpu of fs.readdirSync(path.join(base, os))) if (cpu !== arch) remove.push(path.join(base, os, cpu));
  }
  return { remove };
}

/** tokenizers: tokenizers.<platform>-<arch>[-<abi>].node files — every file but this platform/arch's variants. */
function tokenizersTargets(dir, platform, arch) {
  const keep = (f) => f.startsWith(`tokenizers.${platform}-${arch}-`) || f === `tokenizers.${platform}-${arch}.node` || (platform === 'darwin' && f === 'tokenizers.darwin-universal.node');
  const nodes = fs.readdirSync(dir).filter((f) => /^tokenizers\..+\.node$/.test(f));
  if (!nodes.some(keep)) return { missing: `tokenizers.${platform}-${arch}-*.node` };
  return { remove: nodes.filter((f) => !keep(f)).map((f) => path.join(dir, f)) };
}

const PACKAGES = { 'onnxruntime-node': onnxruntimeTargets, tokenizers: tokenizersTargets };

function bytes(p) {
  const st = fs.lstatSync(p);
  return st.isDirectory() ? fs.readdirSync(p).reduce((s, f) => s + bytes(path.join(p, f)), 0) : st.size;
}

/** Why nothing may be pruned in this environment, or undefined. */
function refusal(env, platform, arch) {
  const keepAll = env.ITD_KEEP_ALL_PLATFORMS;
  if (keepAll !== undefined && keepAll !== '' && keepAll !== '0') return 'ITD_KEEP_ALL_PLATFORMS is set';
  for (const [key, here] of [['npm_config_os', platform], ['npm_config_cpu', arch]]) {
    const v = env[key];
    if (v && v !== here) return `npm installs for ${key.slice(11)}=${v}, this machine is ${here}`;
  }
  if (env.npm_config_libc) return `npm installs for libc=${env.npm_config_libc}`;
  return undefined;
}

/**
 * Prunes the packages as resolved from `fromDir` (itd's package root). Returns one line per package
 * saying what was removed or why it was left alone.
 */
export function pruneBinaries(fromDir, { env = process.env, platform = process.platform, arch = process.arch } = {}) {
  const why = refusal(env, platform, arch);
  if (why) return [`itd: kept every platform's binaries (${why})`];
  const require = createRequire(path.join(fromDir, 'package.json'));
  const lines = [];
  for (const [name, targets] of Object.entries(PACKAGES)) {
    try {
      const dir = fs.realpathSync(packageDir(require, name));
      if (!dir.split(path.sep).includes('node_modules')) {
        lines.push(`itd: left ${name} alone (${dir} is not inside node_modules)`);
        continue;
      }
      const t = targets(dir, platform, arch);
      if (t.missing) {
        lines.push(`itd: left ${name} alone (no ${t.missing} for this machine)`);
        continue;
      }
      let freed = 0;
      for (const p of t.remove) {
        freed += bytes(p);
        fs.rmSync(p, { recursive: true, force: true });
      }
      lines.push(`itd: ${name}: removed ${t.remove.length} other-platform entries (${(freed / 1e6).toFixed(0)} MB)`);
    } catch (e) {
      lines.push(`itd: left ${name} alone (${e.message})`);
    }
  }
  return lines;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const lines = pruneBinaries(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..'));
    // npm shows a dependency's install output only with --foreground-scripts.
    for (const l of lines) process.stderr.write(`${l}\n`);
  } catch (e) {
    process.stderr.write(`itd: binary pruning skipped: ${e.message}\n`);
  }
  process.exitCode = 0;
}
