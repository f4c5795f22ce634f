/**
 * The demo's own prompt set (no external data): subjects in templates. Targets are erased,
 * retained subjects must survive, neutral prompts never mention either.
 */
export const DEMO_TEMPLATES = [
  'a photo of a {}',
  'a painting of a {} at sunset',
  'a {} in the middle of a field',
  'a detailed drawing of a {}',
  'an old photograph of a {} taken on a cloudy afternoon',
  'a close-up picture of a {} in the rain',
  'a {} on a postcard',
];

/**
 * Template indices used to build and calibrate the eraser; the rest are held out for evaluation.
 * The score is a mean over tokens, so the build templates span short and long prompts.
 */
export const DEMO_BUILD_TEMPLATES = [0, 1, 2, 3, 4];
export const DEMO_EVAL_TEMPLATES = [5, 6];

export const DEMO_TARGETS = ['zebra', 'lighthouse', 'volcano'];
export const DEMO_RETAINED = ['horse', 'castle', 'mountain', 'bicycle', 'teapot', 'sailboat', 'owl', 'cathedral'];

export const DEMO_NEUTRAL = [
  'a bowl of fruit on a wooden table', 'a man riding a bicycle down a city street', 'two dogs playing in the snow',
  'a red car parked next to a fire hydrant', 'a plate of pasta with tomato sauce', 'children flying kites on a beach',
  'a cat sleeping on a sofa', 'a train crossing a bridge over a river', 'a woman reading a book in a park',
  'an airplane flying over the clouds', 'a kitchen with white cabinets and a window', 'a bus stopped at a traffic light',
  'a group of people sitting around a campfire', 'a vase of flowers on a windowsill', 'a skateboarder doing a trick',
  'a clock tower in an old town square', 'a laptop and a cup of coffee on a desk', 'a giraffe eating leaves from a tree',
  'a sandwich cut in half on a plate', 'a boy holding a baseball bat', 'a snowy forest at dawn', 'a bird sitting on a fence',
  'a crowded market with colorful stalls', 'an elephant walking through tall grass', 'a pizza with mushrooms and olives',
  'a surfer riding a large wave', 'a living room with a fireplace', 'a street at night with neon signs',
  'a farmer driving a tractor', 'a stack of books next to a lamp', 'a tennis player serving the ball', 'a bridge in the fog',
];

/** Extra unlabelled prompts that only feed SAE training (more contexts for the same words). */
export const DEMO_EXTRA_SUBJECTS = ['dog', 'cat', 'tree', 'river', 'city', 'forest', 'robot', 'flower', 'ship', 'bridge', 'cake', 'guitar'];

/** Adjectives that multiply the training contexts of every subject. */
export const DEMO_ADJECTIVES = ['', 'old', 'small', 'bright', 'dark', 'huge', 'lonely', 'colorful', 'ancient', 'wet'];

export function fill(template: string, subject: string): string {
  return template.replaceAll('{}', subject);
}
