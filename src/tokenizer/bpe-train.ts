/**
 * A small deterministic byte-level BPE trainer with CLIP's cleaning, pre-tokenisation and
 * `</w>` convention. It builds the project-owned fallback vocabulary used by synthetic
 * models when the real CLIP vocabulary is not available.
 */
import { ClipTokenizer, EOT_TOKEN, SOT_TOKEN, byteEncode, mergePair, wordSymbols } from './clip.js';
import { cleanText, preTokenize } from './normalize.js';

interface Word {
  symbols: string[];
  count: number;
}

/** Byte-encoded words of the corpus with their frequencies (special tokens excluded). */
function countWords(corpus: readonly string[]): Word[] {
  const counts = new Map<string, number>();
  for (const text of corpus) {
    for (const word of preTokenize(cleanText(text))) {
      if (word === SOT_TOKEN || word === EOT_TOKEN) continue;
      const encoded = byteEncode(word);
      counts.set(encoded, (counts.get(encoded) ?? 0) + 1);
    }
  }
  return [...counts].map(([encoded, count]) => ({ symbols: wordSymbols(encoded), count }));
}

/** Pair -> frequency over all words; keys are "left right" (no symbol contains a space). */
function countPairs(words: readonly Word[]): Map<string, number> {
  const pairs = new Map<string, number>();
  for (const { symbols, count } of words) {
    for (let i = 0; i < symbols.length - 1; i++) {
      const key = `${symbols[i]} ${symbols[i + 1]}`;
      pairs.set(key, (pairs.get(key) ?? 0) + count);
    }
  }
  return pairs;
}

/**
 * Up to `numMerges` merges, most frequent pair first. Ties go to the lexicographically
 * smallest (left, right), so the result does not depend on corpus order. Training stops
 * early once every corpus word is a single symbol. A pair whose concatenation is already a
 * token is skipped so the vocabulary has no duplicate strings.
 */
export function trainBpe(corpus: readonly string[], numMerges: number): [string, string][] {
  if (!Number.isInteger(numMerges) || numMerges < 0) throw new RangeError(`numMerges must be a non-negative integer, got ${numMerges}`);
  const words = countWords(corpus);
  const known = new Set<string>([SOT_TOKEN, EOT_TOKEN, ...words.flatMap((w) => w.symbols)]);
  const merges: [string, string][] = [];
  while (merges.length < numMerges) {
    const best = bestPair(countPairs(words), known);
    if (best === undefined) break;
    const [left, right] = best;
    merges.push(best);
    known.add(left + right);
    for (const word of words) word.symbols = mergePair(word.symbols, left, right);
  }
  return merges;
}

function bestPair(pairs: Map<string, number>, known: Set<string>): [string, string] | undefined {
  let best: [string, string] | undefined;
  let bestCount = 0;
  for (const [key, count] of pairs) {
    if (count < bestCount) continue;
    const [left, right] = key.split(' ') as [string, string];
    if (known.has(left + right)) continue;
    if (best === undefined || count > bestCount || left < best[0] || (left === best[0] && right < best[1])) {
      best = [left, right];
      bestCount = count;
    }
  }
  return best;
}

/** Varied short image prompts, written for this project, that the fallback vocabulary is trained on. */
export const FALLBACK_CORPUS: string[] = [
  'a photo of a cat',
  'a photo of a dog',
  'a close-up photo of a tabby cat sleeping on a windowsill',
  'a golden retriever running on the beach at sunset',
  'portrait of an old man with a white beard, studio lighting',
  'a young woman reading a book in a cozy cafe',
  'a child flying a red kite in a green field',
  'an astronaut riding a horse on the moon',
  'a painting of a lighthouse in a storm, oil on canvas',
  'a watercolor painting of cherry blossoms in spring',
  'a pencil sketch of a sleeping fox',
  'a city street at night with neon signs and rain',
  'a snowy mountain landscape at dawn',
  'a bowl of fresh fruit on a wooden table',
  'a red sports car parked in front of a modern house',
  'an owl perched on a branch under the full moon',
  'a herd of elephants crossing a river',
  'a lion resting in the tall grass of the savanna',
  'a colorful parrot in a tropical rainforest',
  'a koi pond in a japanese garden',
  'a medieval castle on a hill surrounded by fog',
  'a cyberpunk city skyline, digital art',
  'a cute robot holding a flower, 3d render',
  'a bustling market in marrakech, street photography',
  'a cup of coffee with latte art, shallow depth of field',
  'a vintage bicycle leaning against a brick wall',
  'a wooden cabin in a pine forest covered in snow',
  'a surfer riding a huge wave, action shot',
  'a ballerina dancing on a dark stage under a spotlight',
  'an old fisherman mending his nets at the harbor',
  'a portrait of a woman in the style of vermeer',
  'a landscape in the style of van gogh, swirling sky',
  'a cubist painting of a guitar and a wine bottle',
  'an impressionist painting of a garden with water lilies',
  'a minimalist poster of a mountain and a sun',
  'a pixel art scene of a castle and a dragon',
  'an anime girl with blue hair standing in the rain',
  'a comic book illustration of a superhero flying over the city',
  'a black and white photo of a jazz musician playing the saxophone',
  'a macro photo of a dew drop on a spider web',
  'a long exposure photo of car lights on a highway',
  'an aerial view of a winding river through a forest',
  'a drone shot of a tropical island with white sand',
  'a polaroid photo of friends laughing at a party',
  'a film photograph of a diner at night, 35mm, grainy',
  'a tilt-shift photo of a busy train station',
  'a bouquet of roses in a glass vase, still life',
  'a plate of sushi on a slate board, food photography',
  'a stack of pancakes with maple syrup and berries',
  'a steaming bowl of ramen with a soft boiled egg',
  'a birthday cake with candles on a kitchen counter',
  'a glass of red wine next to a cheese board',
  'a teddy bear sitting on a bed in a child\'s room',
  'a pair of leather boots on a wooden floor',
  'a mechanical watch with exposed gears, product photo',
  'a stained glass window in a gothic cathedral',
  'a marble statue of a greek goddess in a museum',
  'a bronze sculpture of a horse in a city park',
  'a cozy living room with a fireplace and bookshelves',
  'a modern kitchen with white cabinets and a marble island',
  'a library with tall shelves and warm lamps',
  'an abandoned factory overgrown with plants',
  'a lantern-lit alley in an old chinese town',
  'the eiffel tower at sunrise, soft light',
  'a gondola on a canal in venice',
  'the northern lights over a frozen lake',
  'a desert with sand dunes and a camel caravan',
  'a waterfall in a lush jungle, misty morning',
  'a field of sunflowers under a blue sky',
  'a lavender field in provence at golden hour',
  'a rainy window with blurry city lights behind it',
  'a thunderstorm over the prairie with lightning bolts',
  'a coral reef full of fish, underwater photo',
  'a sea turtle swimming near the surface',
  'a whale breaching in the open ocean',
  'a jellyfish glowing in the deep sea',
  'a penguin colony on an icy shore',
  'a polar bear walking on sea ice',
  'a wolf howling at the moon in a snowy forest',
  'a deer standing in a misty meadow',
  'a rabbit eating a carrot in a garden',
  'a hedgehog curled up in autumn leaves',
  'a squirrel holding an acorn, wildlife photography',
  'a hummingbird hovering near a red flower',
  'a flock of birds flying over a lake at dusk',
  'a butterfly resting on a purple flower',
  'a horse galloping through a meadow',
  'a cow grazing in an alpine pasture',
  'a kitten playing with a ball of yarn',
  'a puppy wearing a tiny hat',
  'two cats sitting on a fence at night',
  'three dogs playing in the snow',
  'a man in a suit walking in the rain with an umbrella',
  'a woman with red hair wearing a green dress',
  'a chef cooking in a busy restaurant kitchen',
  'a doctor in a white coat in a hospital hallway',
  'a firefighter in front of a burning building',
  'a farmer driving a tractor through a wheat field',
  'a group of students studying in a library',
  'a street musician playing violin in the subway',
  'an elderly couple holding hands on a park bench',
  'a baby laughing in a high chair',
  'a knight in shining armor holding a sword',
  'a wizard casting a spell in a dark tower',
  'a dragon flying over a burning village, fantasy art',
  'an elf archer in an enchanted forest',
  'a pirate ship sailing through a storm',
  'a samurai standing in a bamboo forest',
  'a viking warrior on a rocky coast',
  'a steampunk airship above victorian london',
  'a spaceship landing on an alien planet',
  'a futuristic city with flying cars, concept art',
  'an alien landscape with two moons in the sky',
  'a robot and a boy sitting on a hill watching the stars',
  'a portrait of a cat dressed as a king, oil painting',
  'a fox wearing a scarf in a snowy village, storybook illustration',
  'a bear reading a newspaper in a cafe',
  'an isometric illustration of a tiny island with a house',
  'a low poly model of a mountain village',
  'a claymation scene of a farm with animals',
  'a paper cut art of a city at night',
  'a mosaic of a peacock with gold tiles',
  'an ink drawing of a bonsai tree',
  'a charcoal portrait of a young man',
  'a renaissance painting of angels in the clouds',
  'a baroque still life with fruit and a skull',
  'a pop art portrait with bright colors',
  'an art deco poster of a train',
  'a surreal painting of melting clocks in a desert',
  'an abstract painting with bold red and blue shapes',
  'a photorealistic render of a glass sphere on a mirror',
  'a highly detailed portrait, 8k, sharp focus',
  'a wide angle shot of a canyon, hdr',
  'a bokeh background with warm fairy lights',
  'a portrait with rim lighting and a dark background',
  'a fashion photo of a model on a runway',
  'a wedding photo of a bride and groom under an arch',
  'a sports photo of a basketball player dunking',
  'a soccer ball on a green pitch at a stadium',
  'a chess board with wooden pieces, close-up',
  'a vintage typewriter on a desk with papers',
  'an old map with a compass and a magnifying glass',
  'a laptop and a notebook on a white desk, top view',
  'a pile of books next to a candle',
  'a red umbrella in a crowd of black umbrellas',
  'a lonely tree on a hill under a starry sky',
  'a small boat on a calm lake at sunrise',
  'a bridge over a river in autumn',
  'a train crossing a stone viaduct in the mountains',
  'a lighthouse on a cliff with crashing waves',
  'a hot air balloon over a valley at dawn',
  'a snowman in a backyard with a carrot nose',
  'a jack-o\'-lantern glowing on a porch on halloween',
  'a christmas tree with presents and twinkling lights',
  'fireworks over a harbor on new year\'s eve',
  'it\'s a sunny day and the kids don\'t want to go home',
  'a 1920s car on a cobblestone street',
  'the year 2077, a rainy megacity with 100 floors',
];

const fallbackCache = new Map<number, ClipTokenizer>();

/** The project-owned tokenizer for synthetic models (SD1 framing: 77 positions, padded with EOS). */
export function fallbackTokenizer(numMerges = 2000): ClipTokenizer {
  let tokenizer = fallbackCache.get(numMerges);
  if (tokenizer === undefined) {
    tokenizer = ClipTokenizer.fromMerges(trainBpe(FALLBACK_CORPUS, numMerges));
    fallbackCache.set(numMerges, tokenizer);
  }
  return tokenizer;
}
