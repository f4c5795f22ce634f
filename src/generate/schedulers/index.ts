/** Scheduler factory: a name plus a diffusers scheduler_config.json object. */
import { KARRAS_SCHEDULERS, parseSchedulerConfig, SCHEDULER_CLASSES, SCHEDULER_NAMES, type SchedulerName } from './config.js';
import { DdimScheduler } from './ddim.js';
import { DpmSolverScheduler } from './dpm.js';
import { EulerScheduler } from './euler.js';
import { PndmScheduler } from './pndm.js';
import type { Scheduler } from './scheduler.js';
import { ItdError } from '../../errors.js';

export * from './config.js';
export type { Scheduler } from './scheduler.js';
export { DdimScheduler, DpmSolverScheduler, EulerScheduler, PndmScheduler };

export interface SchedulerOverrides {
  /** Karras sigma spacing (euler, dpm++2m). */
  karras?: boolean;
}

export function isSchedulerName(s: string): s is SchedulerName {
  return (SCHEDULER_NAMES as readonly string[]).includes(s);
}

/** The itd name of a diffusers scheduler class (scheduler_config.json's _class_name), if implemented. */
export function schedulerForClass(cls: unknown): SchedulerName | undefined {
  return typeof cls === 'string' ? SCHEDULER_CLASSES[cls] : undefined;
}

/**
 * Builds scheduler `name` from a scheduler_config.json object (fields it lacks take the class
 * defaults, as `XScheduler.from_config` does). Unknown names and unsupported settings throw.
 */
export function createScheduler(name: string, raw: unknown, source: string, overrides: SchedulerOverrides = {}): Scheduler {
  if (!isSchedulerName(name)) throw new ItdError('usage', `unknown scheduler '${name}' (expected one of ${SCHEDULER_NAMES.join(', ')})`, { field: 'scheduler' });
  if (overrides.karras && !KARRAS_SCHEDULERS.includes(name)) throw new ItdError('usage', `Karras sigmas (use_karras_sigmas) apply to ${KARRAS_SCHEDULERS.join(' and ')} only, not ${name}`, { field: 'karras' });
  const merged = overrides.karras && typeof raw === 'object' && raw !== null ? { ...raw, use_karras_sigmas: true } : raw;
  const cfg = parseSchedulerConfig(merged, name, source);
  switch (name) {
    case 'pndm':
      return new PndmScheduler(cfg);
    case 'ddim':
      return new DdimScheduler(cfg);
    case 'euler':
      return new EulerScheduler(cfg, false);
    case 'euler-a':
      return new EulerScheduler(cfg, true);
    case 'dpm++2m':
      return new DpmSolverScheduler(cfg);
  }
}
