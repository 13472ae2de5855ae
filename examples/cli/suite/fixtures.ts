import { test as base } from '@playwright/test';

export { expect } from '@playwright/test';

// Every test starts on the shop's home page.
export const test = base.extend({
  page: async ({ page }, use) => {
    await page.goto(`${process.env.TARGET_URL}/`);
    await use(page);
  },
});
