export { ConceptEraser } from './eraser.js';
export type { Classified, ClassifyOptions, Decision, EraseOptions, EraseResult, GatePolicy, TokenScore } from './eraser.js';
export { Gate } from './gate.js';
export * from './conditioning.js';
export * from './eraser-set.js';
