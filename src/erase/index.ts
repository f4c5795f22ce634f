export { ConceptEraser } from './eraser.js';
export type { Decision, EraseOptions, EraseResult, GatePolicy } from './eraser.js';
export { Gate } from './gate.js';
export * from './conditioning.js';
export * from './eraser-set.js';
